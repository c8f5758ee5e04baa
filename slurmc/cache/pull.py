"""Pull an image into a cache root exactly once, safely, whoever else is pulling it.

1. If the image file is there, use it.
2. Take the per-image lock (``.<name>.lock`` beside the image; see lock.py),
   then look again: whoever held the lock may have pulled it meanwhile.
3. Clean leftovers of earlier pulls of this image that were killed.
4. Pull with the runtime's own command into ``.<name>.pulling.<host>.<pid>.<rand>``
   in the target directory (same file system, so the rename is atomic).
5. Check the file is a whole image (SIF header, SquashFS superblock, OCI index),
   make it group- and world-readable, fsync, and only then rename it into place.

A pull that is killed at any point leaves nothing at the final name.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import proc
from ..errors import CacheError, ExternalCommandError, PullError
from ..refs import DEFAULT_DOMAIN, ImageRef
from ..runtimes import Runtime
from .formats import check_image
from .layout import FILE_MODE, make_dirs
from .lock import HOST, ImageLock, Owner, pid_alive

Notify = Callable[[str], None]


@dataclass(frozen=True)
class PullOptions:
    executable: str
    lock_timeout: float = 1800.0
    pull_timeout: float = 3600.0
    lock_lifetime: float = 300.0
    check_network: bool = True


def _quiet(_: str) -> None:
    pass


def registry_endpoint(ref: ImageRef) -> tuple[str, int]:
    """The (host, port) a pull of *ref* connects to."""
    if ref.domain == DEFAULT_DOMAIN:
        return "registry-1.docker.io", 443
    domain = ref.domain
    if domain.startswith("["):  # [IPv6]:port
        host, _, rest = domain[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = domain.partition(":")
    return host, int(port) if port else 443


def check_reachable(ref: ImageRef, runtime: Runtime, env: Mapping[str, str]) -> None:
    """Fail early, with the air-gapped recipe, when the registry cannot be reached."""
    if any(env.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # a proxy decides; let the runtime try
    host, port = registry_endpoint(ref)
    try:
        with socket.create_connection((host, port), timeout=5):
            return
    except OSError as exc:
        reason = exc.strerror or str(exc)
    raise PullError(
        f"cannot reach registry {host}:{port} ({reason}) to pull {ref}; on a machine with "
        f"network access run `{runtime.fetch_hint(ref)}`, copy the file here, then run "
        f"`slurmc cache add FILE {ref}`"
    )


def _leftover_owner(path: str) -> tuple[str, int] | None:
    """``.<name>.pulling.<host>.<pid>.<rand>[suffix]`` -> (host, pid)."""
    rest = path.rsplit(".pulling.", 1)[-1]
    parts = rest.split(".")
    # the host name may hold dots: pid is the second-to-last numeric part
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].isdigit():
            return ".".join(parts[:i]), int(parts[i])
    return None


def clean_leftovers(directory: str, name: str, max_age: float = 86400.0) -> list[str]:
    """Remove temp files of killed pulls: dead pid on this host, or older than *max_age*."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.pulling.*")):
        owner = _leftover_owner(path)
        try:
            age = time.time() - os.lstat(path).st_mtime
        except FileNotFoundError:
            continue
        dead = owner is not None and owner[0] == HOST and not pid_alive(owner[1])
        if dead or age > max_age:
            with contextlib.suppress(OSError):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed.append(path)
    return removed


def _space_error(directory: str, detail: str) -> CacheError | None:
    text = detail.lower()
    full = "no space left" in text or "quota" in text
    try:
        st = os.statvfs(directory)
        full = full or st.f_bavail * st.f_frsize < 1024 * 1024
    except OSError:
        pass
    if not full:
        return None
    return CacheError(
        f"no space left in {directory} (or over quota) while pulling; nothing was published. "
        "Free space, e.g. `slurmc cache prune --max-size SIZE`, or use --cache-dir DIR"
    )


def _bytes_in(paths: tuple[str, ...]) -> int:
    total = 0
    for p in paths:
        if os.path.isfile(p):
            total += os.path.getsize(p)
        elif os.path.isdir(p):
            for d, _, files in os.walk(p):
                for f in files:
                    with contextlib.suppress(OSError):
                        total += os.lstat(os.path.join(d, f)).st_size
    return total


class _Ticker:
    """Calls *ticker(elapsed, bytes)* once a second from a thread while a pull runs."""

    def __init__(
        self, ticker: Callable[[float, int], None] | None, started: float, paths: tuple[str, ...]
    ) -> None:
        self.ticker, self.started, self.paths = ticker, started, paths
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        assert self.ticker is not None
        while not self.stop.wait(1.0):
            self.ticker(time.monotonic() - self.started, _bytes_in(self.paths))

    def __enter__(self) -> _Ticker:
        if self.ticker is not None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def publish(tmp: str, final: str) -> None:
    """Make *tmp* readable to the group, flush it, and rename it to *final* atomically."""
    os.chmod(tmp, FILE_MODE)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    with contextlib.suppress(OSError):
        dfd = os.open(os.path.dirname(final), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def temp_name(final: str, suffix: str) -> str:
    directory, name = os.path.split(final)
    return os.path.join(
        directory, f".{name}.pulling.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}"
    )


def pull_into(
    ref: ImageRef,
    runtime: Runtime,
    root: str,
    options: PullOptions,
    env: Mapping[str, str],
    *,
    notify: Notify = _quiet,
    write: Callable[[str], None] | None = None,
    ticker: Callable[[float, int], None] | None = None,
) -> str:
    """Return the path of *ref* in *root*, pulling it first if needed (see module docs).

    *ticker*, if given, is called about once a second during the pull with the seconds
    elapsed and the bytes written so far (for a progress display on a terminal).
    *write*, if given, replaces the runtime pull: it must write the image to the path
    it is given (``slurmc cache add`` copies a local file this way).
    """
    final = os.path.join(root, runtime.cache_relpath(ref))
    if os.path.isfile(final) and write is None:
        return final
    directory, name = os.path.split(final)
    if write is None and options.check_network:
        check_reachable(ref, runtime, env)  # before anything is created
    try:
        make_dirs(root, directory)
    except OSError as exc:
        raise CacheError(
            f"cannot create {directory} ({exc.strerror}); use a writable cache with --cache-dir DIR"
        ) from None

    def waiting(owner: Owner) -> None:
        notify(f"waiting for the pull of {ref} by {owner.describe()}")

    lock = ImageLock(
        os.path.join(directory, f".{name}.lock"),
        timeout=options.lock_timeout,
        lifetime=options.lock_lifetime,
        on_wait=waiting,
        ready=(lambda: os.path.isfile(final)) if write is None else None,
    )
    if not lock.acquire():
        notify(f"{ref} was pulled by another process meanwhile")
        return final
    try:
        if os.path.isfile(final) and write is None:  # pulled just before we took the lock
            notify(f"{ref} was pulled by another process meanwhile")
            return final
        clean_leftovers(directory, name, max_age=max(options.lock_lifetime, 3600.0))
        tmp = temp_name(final, runtime.suffix)
        scratch = tempfile.mkdtemp(prefix="slurmc-pull-")
        try:
            if write is not None:
                write(tmp)
            else:
                started = time.monotonic()
                notify(f"pulling {ref} into {final}")
                with _Ticker(ticker, started, (tmp, scratch)):
                    for step in runtime.pull_steps(options.executable, ref, tmp, scratch):
                        try:
                            proc.run(
                                step.argv, env={**env, **step.env}, timeout=options.pull_timeout
                            )
                        except ExternalCommandError as exc:
                            raise _space_error(directory, exc.stderr) or PullError(
                                f"pulling {ref} failed: {exc}; nothing was published"
                            ) from None
                size = os.path.getsize(tmp) if os.path.exists(tmp) else 0
                notify(f"pulled {ref} ({size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
            check_image(tmp, runtime.format)
            publish(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _space_error(directory, "no space left") or CacheError(str(exc)) from None
            raise CacheError(f"cannot write {directory}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        lock.release()
    return final
