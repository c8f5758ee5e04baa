"""Pull an image into a cache root exactly once, safely, whoever else is pulling it.

1. If the image file is there (a regular file reached without links), use it.
2. Open the image's directory component by component without following links
   (layout.open_dir), creating what is missing; everything below happens
   relative to that descriptor.
3. Take the per-image lock (``.<name>.lock`` beside the image; see lock.py),
   then look again: whoever held the lock may have pulled it meanwhile.
4. Clean leftovers of earlier pulls of this image that were killed.
5. Make a private directory (mode 0700, see workdir.py) ``.<name>.pulling.<host>.<pid>.<rand>``
   beside the image (same file system, so the rename is atomic) and let the
   runtime's own command write the image in it, through ``/proc/<pid>/fd/<fd>``
   so that no rename in the shared tree can redirect it. No other user can
   create, rename or replace anything inside it.
6. Open the result with ``O_NOFOLLOW`` and check, on the descriptor, that it is a
   regular file we own; check it is a whole image (SIF header, SquashFS
   superblock, OCI index), ``fchmod`` it group- and world-readable, ``fsync``,
   check the name still holds the same file (device and inode), and only then
   rename it from the private directory into place.

A pull that is killed at any point leaves nothing at the final name; a link
or file planted by another member of the group is never followed, chmod-ed
or published: the pull fails with one line instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from slurmc import proc
from slurmc.cache.layout import is_image_at, lookup, open_dir
from slurmc.cache.lock import HOST, ImageLock, Owner
from slurmc.cache.provenance import sha256_at, write_meta
from slurmc.cache.workdir import (
    anchored,
    clean_leftovers,
    make_work_dir,
    publish_at,
    remove_work_dir,
)
from slurmc.errors import CacheError, ExternalCommandError, PullError
from slurmc.grammar.refs import DEFAULT_DOMAIN, ImageRef
from slurmc.runtimes import Runtime
from slurmc.runtimes.base import Login

__all__ = ["PullOptions", "clean_leftovers", "publish_at", "pull_into"]

Notify = Callable[[str], None]


@dataclass(frozen=True)
class PullOptions:
    executable: str
    lock_timeout: float = 1800.0
    pull_timeout: float = 3600.0
    lock_lifetime: float = 300.0
    check_network: bool = True
    #: the registry login; None: the user's credentials files (slurmc.cache.credentials)
    login: Login | None = None
    #: pull even when the image is cached, replacing it (``--refresh`` after a tag moved)
    replace: bool = False


#: what the runtimes print when a registry refused them for want of a (good) login
_AUTH_FAILED = ("401", "unauthorized", "authentication required", "no basic auth credentials")


def auth_hint(ref: ImageRef, login: Login | None, env: Mapping[str, str]) -> str:
    """One line: which registry wants a login and how to give one."""
    from slurmc.cache.credentials import credentials_file

    if login is not None:
        return (
            f"registry {ref.domain} refused the login of {login.username}; check the user "
            f"and password (slurmc cache pull --username USER --save {ref})"
        )
    return (
        f"registry {ref.domain} wants a login: run `slurmc cache pull --username USER --save "
        f"{ref}`, or add `machine {ref.domain} login USER password SECRET` to "
        f"{credentials_file(env)} (chmod 600)"
    )


def login_for(ref: ImageRef, options: PullOptions, env: Mapping[str, str]) -> Login | None:
    """The login a pull of *ref* uses: the one given, else the user's stored one."""
    if options.login is not None:
        return options.login
    from slurmc.cache.credentials import lookup

    found = lookup(ref.domain, env)
    return found.as_login() if found is not None else None


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


NAME_MAX = 255


def _write_files(scratch: str, files: Mapping[str, str]) -> None:
    """A step's private files (credentials) in the pull's 0700 scratch directory, 0600."""
    for rel, text in files.items():
        path = os.path.join(scratch, rel)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)


def current_digest(ref: ImageRef, login: Login | None, env: Mapping[str, str]) -> str:
    """The manifest digest *ref*'s tag points at now; a registry that wants a login the
    user has not given (or refuses the one given) is one line with the way to give one."""
    from slurmc.cache.registry import RegistryAuthError, manifest_digest

    try:
        return manifest_digest(ref, login)
    except RegistryAuthError:
        raise RegistryAuthError(auth_hint(ref, login, env)) from None


def _digest_now(ref: ImageRef, login: Login | None, env: Mapping[str, str]) -> dict[str, str]:
    """The digest asked just before the pull (a missing login stops the pull here); a
    registry that cannot say otherwise is recorded so, and the runtime's pull goes on."""
    from slurmc.cache.registry import RegistryAuthError

    try:
        return {"digest": current_digest(ref, login, env)}
    except RegistryAuthError:
        raise
    except PullError as exc:
        return {"digest_error": str(exc)[:200]}


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _check_name_length(ref: ImageRef, name: str) -> None:
    """Fail before creating anything if the lock or temp names would pass NAME_MAX."""
    longest = f".{name}.lock.broken.{HOST}.{'9' * 7}.{'0' * 8}"
    if len(os.fsencode(longest)) > NAME_MAX:
        raise CacheError(
            f"{ref}: its cache file name is {len(os.fsencode(name))} bytes and slurmc's lock "
            f"and temp names add {len(os.fsencode(longest)) - len(os.fsencode(name))}, past "
            f"the {NAME_MAX}-byte limit of a file name; use a shorter tag, or pass a local "
            "image file instead of a reference"
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
    relpath = runtime.cache_relpath(ref)
    final = os.path.join(root, relpath)
    if write is None and not options.replace and lookup(root, relpath):
        return final
    directory, name = os.path.split(final)
    *parts, _ = relpath.split("/")
    _check_name_length(ref, name)
    if write is None and options.check_network:
        check_reachable(ref, runtime, env)  # before anything is created
    try:
        dir_fd = open_dir(root, parts, create=True)
    except OSError as exc:
        raise CacheError(
            f"cannot create {directory} ({exc.strerror}); use a writable cache with --cache-dir DIR"
        ) from None
    try:
        return _pull_locked(
            ref, runtime, options, env, dir_fd, final, notify=notify, write=write, ticker=ticker
        )
    finally:
        os.close(dir_fd)


def _pull_locked(
    ref: ImageRef,
    runtime: Runtime,
    options: PullOptions,
    env: Mapping[str, str],
    dir_fd: int,
    final: str,
    *,
    notify: Notify,
    write: Callable[[str], None] | None,
    ticker: Callable[[float, int], None] | None,
) -> str:
    directory, name = os.path.split(final)
    replacing = options.replace

    def waiting(owner: Owner) -> None:
        notify(f"waiting for the pull of {ref} by {owner.describe()}")

    lock = ImageLock(
        os.path.join(directory, f".{name}.lock"),
        timeout=options.lock_timeout,
        lifetime=options.lock_lifetime,
        on_wait=waiting,
        ready=(lambda: is_image_at(dir_fd, name)) if write is None and not replacing else None,
        dir_fd=dir_fd,
    )
    if not lock.acquire():
        notify(f"{ref} was pulled by another process meanwhile")
        return final
    try:
        if write is None and not replacing and is_image_at(dir_fd, name):
            notify(f"{ref} was pulled by another process meanwhile")  # just before our lock
            return final
        clean_leftovers(directory, name, max_age=max(options.lock_lifetime, 3600.0), dir_fd=dir_fd)
        work, work_fd = make_work_dir(dir_fd, directory, name)
        tmp = anchored(work_fd, name) or os.path.join(directory, work, name)
        scratch = tempfile.mkdtemp(prefix="slurmc-pull-")
        meta: dict[str, object] = {"source": "added"}
        try:
            if write is not None:
                write(tmp)
            else:
                login = login_for(ref, options, env)
                meta = {"source": "pulled", **_digest_now(ref, login, env)}
                started = time.monotonic()
                notify(f"pulling {ref} into {final}")
                with _Ticker(ticker, started, (tmp, scratch)):
                    steps = runtime.pull_steps(options.executable, ref, tmp, scratch, login)
                    for step in steps:
                        _write_files(scratch, step.files)
                        try:
                            proc.run(
                                step.argv, env={**env, **step.env}, timeout=options.pull_timeout
                            )
                        except ExternalCommandError as exc:
                            if any(m in exc.stderr.lower() for m in _AUTH_FAILED):
                                raise PullError(auth_hint(ref, login, env)) from None
                            said = str(exc).replace(tmp, os.path.join(directory, work, name))
                            raise _space_error(directory, exc.stderr) or PullError(
                                f"pulling {ref} failed: {said}; nothing was published"
                            ) from None
                try:
                    size = os.stat(name, dir_fd=work_fd, follow_symlinks=False).st_size
                except OSError:
                    size = 0
                notify(f"pulled {ref} ({size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
            meta.update(sha256=sha256_at(work_fd, name), pulled_by=_user(), pulled_at=_now())
            publish_at(work_fd, name, dir_fd, name, runtime.format, final)
            meta["size"] = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
            write_meta(dir_fd, name, meta)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _space_error(directory, "no space left") or CacheError(str(exc)) from None
            if exc.errno in (errno.EPERM, errno.EACCES) and os.path.lexists(final):
                raise CacheError(
                    f"cannot replace {final}: it belongs to another user and the directory is "
                    "sticky; ask its owner or the cache's owner"
                ) from None
            raise CacheError(f"cannot write {directory}: {exc.strerror}") from None
        finally:
            remove_work_dir(dir_fd, work_fd, work)
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        lock.release()
    return final
