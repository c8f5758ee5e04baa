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
at once; any other lock is honoured until the waiter has seen its content and
its mtime unchanged for ``lifetime`` seconds on the waiter's own monotonic
clock (the holder's heartbeat changes the mtime), so clock skew between the
hosts and the file server does not matter. A waiter that runs out of time
raises LockTimeoutError and never goes on without the lock.

A ``link(2)`` that fails for any reason other than EEXIST (a file system
without hard links answers EPERM or ENOTSUP) fails at once: waiting would
never end.

The lock keeps two pulls of one image from running at once; it is not what
keeps the cache safe. Every name is used without following symbolic links
(``O_NOFOLLOW``, ``link`` without ``AT_SYMLINK_FOLLOW``, ``utime`` on the
link itself) relative to the image directory's descriptor when one is given,
so a link planted by another user cannot make slurmc write elsewhere. Even if
two callers held the lock at once (see ``_break``), each pulls into its own
private directory and publishes a checked, complete image by ``rename(2)``:
the worst case is one image pulled twice.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from slurmc.errors import CacheError, LockTimeoutError

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
    """Whether *pid* runs on this host (signal 0 tests, it sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except (OverflowError, ValueError):
        return False  # not a pid at all
    return True


_FOREIGN = Owner("?", -1, 0.0, "")
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def read_owner(path: str, dir_fd: int | None = None) -> Owner | None:
    """The owner written in the lock file; None if there is none, ``?`` if unreadable.

    A symbolic link, FIFO or device is never opened through (O_NOFOLLOW|O_NONBLOCK,
    then a regular-file check), and at most 4 KiB are read.
    """
    try:
        fd = os.open(path, _NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError:
        return _FOREIGN  # a symbolic link (ELOOP) or unreadable: owned by nobody we know
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return _FOREIGN
        data = json.loads(os.read(fd, 4096))
        host, pid, since, token = data["host"], data["pid"], data["since"], data["token"]
        if not (
            isinstance(host, str)
            and type(pid) is int
            and isinstance(since, (int, float))
            and isinstance(token, str)
        ):
            return _FOREIGN
        return Owner(host, pid, float(since), token)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return _FOREIGN  # half-written or foreign
    finally:
        os.close(fd)


def _writable_error(directory: str, exc: OSError) -> CacheError:
    what = {
        errno.EROFS: "is on a read-only file system",
        errno.EACCES: "is not writable by you",
        errno.EPERM: "is not writable by you",
        errno.ENOSPC: "is full",
        errno.EDQUOT: "is over quota",
        errno.ENAMETOOLONG: "cannot hold a name this long (over 255 bytes)",
    }.get(exc.errno or 0, f"cannot be written ({exc.strerror})")
    return CacheError(
        f"cache directory {directory} {what}; use a writable cache with --cache-dir DIR "
        "or ask the cache's owner to add the image"
    )


class ImageLock:
    """``with ImageLock(path): ...`` holds the lock file *path* (see module docs).

    With *dir_fd*, every operation is on the base name of *path* relative to that
    open directory (the caller has checked it is the real directory); *path* is
    then only for messages.
    """

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 1800.0,
        lifetime: float = 300.0,
        on_wait: Callable[[Owner], None] | None = None,
        poll: float = 0.05,
        ready: Callable[[], bool] | None = None,
        dir_fd: int | None = None,
    ) -> None:
        self.path = path
        self.dir_fd = dir_fd
        self._name = os.path.basename(path) if dir_fd is not None else path
        self.timeout = timeout
        self.lifetime = lifetime
        self.on_wait = on_wait
        self.poll = poll
        self.ready = ready
        self.owner: Owner | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._seen: tuple[object, float] | None = None  # (what the lock looked like, since)

    @property
    def _directory(self) -> str:
        return os.path.dirname(self.path) or "."

    # -- acquire --------------------------------------------------------------------
    def _try_link(self) -> bool:
        me = Owner(HOST, os.getpid(), time.time(), uuid.uuid4().hex)
        unique = f"{self._name}.{HOST}.{me.pid}.{me.token[:8]}"
        fds = {"dir_fd": self.dir_fd}
        try:
            # O_EXCL: fails on anything already there, a symbolic link included
            fd = os.open(unique, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o664, **fds)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me.__dict__, fh)
        except OSError as exc:
            raise _writable_error(self._directory, exc) from None
        try:
            try:
                os.link(
                    unique,
                    self._name,
                    src_dir_fd=self.dir_fd,
                    dst_dir_fd=self.dir_fd,
                    follow_symlinks=False,
                )
            except FileExistsError:
                return False
            except OSError as exc:
                try:  # NFS: the reply may be lost, not the link
                    linked = os.stat(unique, follow_symlinks=False, **fds).st_nlink == 2
                except OSError:
                    linked = False
                if not linked:
                    if exc.errno == errno.ENOENT:
                        return False  # our unique file was removed meanwhile: try again
                    if exc.errno in _NO_HARD_LINKS:
                        raise CacheError(
                            f"the file system of {self._directory} cannot hold slurmc's lock "
                            f"(link(2) fails: {exc.strerror}); put the cache on a file system "
                            "with hard links (NFS, Lustre, GPFS, ext4, XFS) with --cache-dir DIR"
                        ) from None
                    raise _writable_error(self._directory, exc) from None
            self.owner = me
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(unique, **fds)

    def _held(self) -> bool:
        """Whether anything is at the lock's name now."""
        try:
            os.stat(self._name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # let the link say what is wrong
        return True

    def _look(self, owner: Owner) -> object | None:
        """What the lock looks like now (content and mtime), or None if it is gone."""
        try:
            st = os.stat(self._name, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return None
        return (owner, st.st_ino, st.st_mtime_ns, st.st_size)

    def _stale(self, owner: Owner | None) -> bool:
        """Dead pid on this host, or seen unchanged for ``lifetime`` s on our own clock."""
        if owner is None:
            return False
        if owner.host == HOST and owner.pid > 0:
            return not pid_alive(owner.pid)
        look = self._look(owner)
        if look is None:
            return False
        now = time.monotonic()
        if self._seen is None or self._seen[0] != look:
            self._seen = (look, now)  # changed (a heartbeat, a new holder): start again
            return False
        return now - self._seen[1] >= self.lifetime

    def _break(self, owner: Owner) -> None:
        """Move a stale lock aside, atomically; put it back if it was not the one judged.

        Window: between the rename and the link back, a third caller may link a
        new lock, and the link back then fails: two callers hold the lock. That is
        harmless (tests/cache/test_lock.py shows it): each pulls into its own
        private directory and publishes a complete image by rename, so the image is
        at worst pulled twice. The lock only saves work; it never guards the cache.
        """
        aside = f"{self._name}.broken.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        fds = {"dir_fd": self.dir_fd}
        try:
            os.rename(self._name, aside, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            who = owner.describe() if owner.pid > 0 else "an unknown holder"
            raise CacheError(
                f"the stale lock {self.path} (held by {who}) cannot be removed by you "
                f"({exc.strerror}; in a sticky directory only its owner can); ask its owner "
                "or the cache's owner to remove it"
            ) from None
        try:
            moved = read_owner(aside, self.dir_fd)
            if moved is not None and moved.token != owner.token:
                with contextlib.suppress(OSError):  # a fresh lock was taken meanwhile
                    os.link(
                        aside,
                        self._name,
                        src_dir_fd=self.dir_fd,
                        dst_dir_fd=self.dir_fd,
                        follow_symlinks=False,
                    )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside, **fds)
        self._seen = None

    def acquire(self) -> bool:
        """Take the lock (True), or stop waiting because ``ready()`` became true (False)."""
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        told: str | None = None
        self._seen = None
        first = True
        while True:
            # after the first try, link only once the lock is gone: a waiter's poll is
            # then a stat or two, not a file written, linked and removed (32 waiters on
            # NFS make a lot of those)
            if (first or not self._held()) and self._try_link():
                self._start_heartbeat()
                return True
            first = False
            if self.ready is not None and self.ready():
                return False  # what the holder was making is there: no need to wait on
            owner = read_owner(self._name, self.dir_fd)
            if owner is not None and self._stale(owner):
                self._break(owner)
                continue
            if owner is not None and self.on_wait and owner.token != told:
                self.on_wait(owner)
                told = owner.token
            if time.monotonic() >= deadline:
                who = owner.describe() if owner and owner.pid > 0 else "an unknown holder"
                raise LockTimeoutError(
                    f"gave up after {self.timeout:g} s waiting for {self.path} (held by {who}); "
                    f"if that pull is dead, remove the lock file and retry"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)  # waiters see a finished pull within 0.25 s

    # -- hold -----------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(max(self.lifetime / 4, 0.05)):
                with contextlib.suppress(OSError, NotImplementedError):
                    os.utime(self._name, dir_fd=self.dir_fd, follow_symlinks=False)

        self._stop.clear()
        self._beat = threading.Thread(target=beat, name="slurmc-lock-heartbeat", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat:
            self._beat.join()  # no heartbeat may touch the name once it is gone
            self._beat = None
        owner = read_owner(self._name, self.dir_fd)
        if self.owner and owner and owner.token == self.owner.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._name, dir_fd=self.dir_fd)
        self.owner = None

    def __enter__(self) -> ImageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
