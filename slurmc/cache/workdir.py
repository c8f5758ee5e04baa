"""A pull's private directory, and how its result is published into a shared cache.

Another member of the cache's group may rename anything in a directory without the
sticky bit and plant links. So a pull writes into its own directory (mode 0700)
``.<name>.pulling.<host>.<pid>.<rand>`` beside the image, reached by the runtime
through ``/proc/<pid>/fd/<fd>`` (no rename in the shared tree can redirect it), and
the result is published from there by :func:`publish_at`: opened with
``O_NOFOLLOW``, checked on the descriptor (a regular file we own, a whole image),
``fchmod``-ed and ``fsync``-ed, checked to still be at its name (device, inode),
then renamed into place. Leftovers of killed pulls are removed by name prefix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
import uuid

from slurmc.cache.formats import check_image
from slurmc.cache.layout import FILE_MODE
from slurmc.cache.lock import HOST, pid_alive
from slurmc.errors import CacheError

_DIRF = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILEF = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _leftover_owner(path: str) -> tuple[str, int] | None:
    """``.<name>.pulling.<host>.<pid>.<rand>[suffix]`` -> (host, pid)."""
    rest = path.rsplit(".pulling.", 1)[-1]
    parts = rest.split(".")
    # the host name may hold dots: pid is the second-to-last numeric part
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].isdigit():
            return ".".join(parts[:i]), int(parts[i])
    return None


def _process_age(pid: int) -> float | None:
    """How long ago process *pid* started (Linux /proc), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _same_process(pid: int, leftover_age: float) -> bool:
    """The pull that made a leftover *leftover_age* seconds ago still runs as *pid*: the
    pid is alive and its process is older than the leftover (pids are reused, and on a
    busy node soon: a process started after the leftover is another one)."""
    if not pid_alive(pid):
        return False
    age = _process_age(pid)
    return age is None or age + 2.0 >= leftover_age


def _rmtree_at(parent_fd: int, name: str) -> None:
    """Remove the directory *name* in *parent_fd* and all in it, following no link."""
    fd = os.open(name, _DIRF, dir_fd=parent_fd)
    try:
        with os.scandir(fd) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    _rmtree_at(fd, entry.name)
                else:
                    os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def clean_leftovers(
    directory: str, name: str, max_age: float = 86400.0, *, dir_fd: int | None = None
) -> list[str]:
    """Remove temp files of killed pulls: dead pid on this host, or older than *max_age*.

    Works through *dir_fd* (or *directory* opened without following a link). Another
    user's private pull directory cannot be emptied by us: it is skipped, silently.
    """
    removed: list[str] = []
    prefix = f".{name}.pulling."
    own_fd = dir_fd is None
    try:
        fd = (
            os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            if dir_fd is None
            else dir_fd
        )
    except OSError:
        return removed
    try:
        with os.scandir(fd) as it:
            found = [e for e in it if e.name.startswith(prefix)]
        for entry in found:
            owner = _leftover_owner(entry.name)
            try:
                age = time.time() - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            dead = owner is not None and owner[0] == HOST and not _same_process(owner[1], age)
            if dead or age > max_age:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        _rmtree_at(fd, entry.name)
                    else:
                        os.unlink(entry.name, dir_fd=fd)
                    removed.append(os.path.join(directory, entry.name))
    except OSError:
        pass
    finally:
        if own_fd:
            os.close(fd)
    return removed


def _checked_image(fd: int, fmt: str, shown: str) -> None:
    """check_image on the open file itself (not on a name someone could swap)."""
    via = f"/proc/self/fd/{fd}"
    if not os.path.exists(via):  # no /proc: the name inside our private directory
        check_image(shown, fmt)
        return
    try:
        check_image(via, fmt)
    except CacheError as exc:
        raise CacheError(str(exc).replace(via, shown)) from None


def publish_at(work_fd: int, name: str, dir_fd: int, final_name: str, fmt: str, shown: str) -> None:
    """Publish *name* of the private directory *work_fd* as *final_name* in *dir_fd*.

    Only a regular file we own is published, checked and made readable through its
    descriptor, flushed, and renamed only while the name still holds that file.
    """
    try:
        fd = os.open(name, _FILEF, dir_fd=work_fd)
    except FileNotFoundError:
        raise CacheError(f"{shown}: no image file was written; nothing was published") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheError(
                f"{shown}: the pull left a symbolic link, not an image; nothing was published"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise CacheError(
                f"{shown}: not a regular file of yours (someone else's file or a special "
                "file); nothing was published"
            )
        _checked_image(fd, fmt, shown)
        os.fchmod(fd, FILE_MODE)
        os.fsync(fd)
        now = os.stat(name, dir_fd=work_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise CacheError(f"{shown}: replaced while it was checked; nothing was published")
    finally:
        os.close(fd)
    os.rename(name, final_name, src_dir_fd=work_fd, dst_dir_fd=dir_fd)
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)


def anchored(work_fd: int, name: str) -> str | None:
    """``/proc/<our pid>/fd/<work_fd>/<name>``: a path to the private directory that no
    rename or link in the shared tree can redirect (the kernel resolves it through our
    descriptor), for the runtime's command to write to; None where /proc cannot do it.

    The private directory alone is not enough: in a directory without the sticky bit
    another member of the group may rename it away and put a symbolic link in its place,
    and a command given the plain path would then write where the link points.
    """
    via = f"/proc/{os.getpid()}/fd/{work_fd}"
    try:
        if os.path.samestat(os.stat(via), os.fstat(work_fd)):
            return f"{via}/{name}"
    except OSError:
        pass
    return None


def make_work_dir(dir_fd: int, directory: str, name: str, tries: int = 5) -> tuple[str, int]:
    """Make our private pull directory and open it: ``(name, descriptor)``.

    Between the mkdir and the open another member may rename it away and put a link
    or a directory of theirs in its place; the open (no link followed) or the check
    (ours, 0700, empty) then fails and a new name is tried.
    """
    for _ in range(tries):
        work = work_dir_name(name)
        try:
            os.mkdir(work, 0o700, dir_fd=dir_fd)
        except OSError as exc:
            raise CacheError(f"cannot write {directory}: {exc.strerror}") from None
        try:
            fd = os.open(work, _DIRF, dir_fd=dir_fd)
        except OSError:
            continue  # replaced by a link or a file before we could open it
        st = os.fstat(fd)
        if (
            st.st_uid == os.geteuid()
            and stat.S_IMODE(st.st_mode) & 0o077 == 0
            and not os.listdir(fd)
        ):
            return work, fd
        os.close(fd)
    raise CacheError(
        f"{directory}: another user keeps replacing slurmc's private pull directory; nothing "
        "was published. Ask the cache's owner to set the sticky bit (chmod +t) on the cache"
    )


def remove_work_dir(dir_fd: int, work_fd: int, work: str) -> None:
    """Remove our private directory, under its current name if someone renamed it,
    and nothing else (a link or directory put in its place is left alone)."""
    names = [work]
    with contextlib.suppress(OSError):
        names.insert(0, os.path.basename(os.readlink(f"/proc/self/fd/{work_fd}")))
    try:
        ours = os.fstat(work_fd)
        for candidate in names:
            with contextlib.suppress(OSError):
                st = os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
                if os.path.samestat(st, ours):
                    _rmtree_at(dir_fd, candidate)
                    return
    finally:
        os.close(work_fd)


def work_dir_name(name: str) -> str:
    """The private directory of one pull: ``.<name>.pulling.<host>.<pid>.<rand>``."""
    return f".{name}.pulling.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
