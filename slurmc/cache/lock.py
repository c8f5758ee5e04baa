"""A per-image lock that works on shared file systems without working flock.

Lustre gives flock only when mounted ``-o flock`` (ENOSYS otherwise), an NFS
``nolock`` mount turns flock/fcntl into silent no-ops, so this lock relies only
on what every POSIX file system (NFSv3 included) does atomically: ``link(2)``.

Taking the lock: write a unique file holding the owner (host, pid, start time,
token), then hard-link it to the lock name. The link succeeds for one caller
only; when an NFS reply is lost, a link count of 2 on the unique file still
tells the truth. The holder refreshes the lock's mtime (a heartbeat) while it
works, so waiters on other hosts can tell a live lock from an abandoned one.

Breaking: a lock whose owner runs on this host and whose pid is gone is broken
at once; a lock from another host is honoured until ``lifetime`` seconds pass
without a heartbeat. A waiter that runs out of time raises LockTimeoutError and
never goes on without the lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CacheError, LockTimeoutError

HOST = socket.gethostname()


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    since: float
    token: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"host {self.host}, pid {self.pid}, since {when}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def read_owner(path: str) -> Owner | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return Owner(str(data["host"]), int(data["pid"]), float(data["since"]), str(data["token"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # a half-written or foreign file: treat as owned by nobody we know
        return Owner("?", -1, 0.0, "")


def _writable_error(directory: str, exc: OSError) -> CacheError:
    what = {
        errno.EROFS: "is on a read-only file system",
        errno.EACCES: "is not writable by you",
        errno.EPERM: "is not writable by you",
        errno.ENOSPC: "is full",
        errno.EDQUOT: "is over quota",
    }.get(exc.errno or 0, f"cannot be written ({exc.strerror})")
    return CacheError(
        f"cache directory {directory} {what}; use a writable cache with --cache-dir DIR "
        "or ask the cache's owner to add the image"
    )


class ImageLock:
    """``with ImageLock(path): ...`` holds the lock file *path* (see module docs)."""

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 1800.0,
        lifetime: float = 300.0,
        on_wait: Callable[[Owner], None] | None = None,
        poll: float = 0.05,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.lifetime = lifetime
        self.on_wait = on_wait
        self.poll = poll
        self.ready = ready
        self.owner: Owner | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- acquire --------------------------------------------------------------------
    def _try_link(self) -> bool:
        me = Owner(HOST, os.getpid(), time.time(), uuid.uuid4().hex)
        unique = f"{self.path}.{HOST}.{me.pid}.{me.token[:8]}"
        try:
            fd = os.open(unique, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me.__dict__, fh)
        except OSError as exc:
            raise _writable_error(os.path.dirname(self.path) or ".", exc) from None
        try:
            try:
                os.link(unique, self.path)
            except FileExistsError:
                return False
            except OSError:
                if os.stat(unique).st_nlink != 2:  # NFS: the reply may be lost, not the link
                    return False
            self.owner = me
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(unique)

    def _stale(self, owner: Owner | None) -> bool:
        if owner is None:
            return False
        if owner.host == HOST and owner.pid > 0:
            return not pid_alive(owner.pid)
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return False
        return age > self.lifetime

    def _break(self, owner: Owner) -> None:
        """Move a stale lock aside, atomically; put it back if it was not the one judged."""
        aside = f"{self.path}.broken.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_owner(aside)
        if moved is not None and moved.token != owner.token:
            with contextlib.suppress(OSError):
                os.link(aside, self.path)  # a fresh lock was taken meanwhile: restore it
        with contextlib.suppress(OSError):
            os.unlink(aside)

    def acquire(self) -> bool:
        """Take the lock (True), or stop waiting because ``ready()`` became true (False)."""
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        told: str | None = None
        while True:
            if self._try_link():
                self._start_heartbeat()
                return True
            if self.ready is not None and self.ready():
                return False  # what the holder was making is there: no need to wait on
            owner = read_owner(self.path)
            if owner is not None and self._stale(owner):
                self._break(owner)
                continue
            if owner is not None and self.on_wait and owner.token != told:
                self.on_wait(owner)
                told = owner.token
            if time.monotonic() >= deadline:
                who = owner.describe() if owner else "an unknown holder"
                raise LockTimeoutError(
                    f"gave up after {self.timeout:g} s waiting for {self.path} (held by {who}); "
                    f"if that pull is dead, remove the lock file and retry"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)  # waiters see a finished pull within 0.5 s

    # -- hold -----------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(max(self.lifetime / 4, 0.05)):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        self._stop.clear()
        self._beat = threading.Thread(target=beat, name="slurmc-lock-heartbeat", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat:
            self._beat.join()
        owner = read_owner(self.path)
        if self.owner and owner and owner.token == self.owner.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self.owner = None

    def __enter__(self) -> ImageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
