"""Where images live in a cache root, and what a root holds.

A root holds one file per image at ``runtime.cache_relpath(ref)``; names that
start with ``.`` are slurmc's own (locks, pulls in progress) and are never
images. Listing walks the tree with ``os.scandir`` (one ``stat`` per entry).

Other members of the cache's group can write every directory of a shared root,
so below the root slurmc never follows a symbolic link someone else made:
directories are walked one component at a time with ``O_NOFOLLOW|O_DIRECTORY``
and used through their descriptors, and an image is an image only if ``lstat``
calls it a regular file. A link is followed only when it belongs to the user
running slurmc or to root (an image linked in by yourself or by the cache's
administrator); any other link found where a directory or image should be is
reported or skipped, never used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass

from slurmc.errors import CacheError, InvalidReferenceError
from slurmc.grammar.refs import ImageRef, parse_reference
from slurmc.runtimes import Runtime
from slurmc.values import replace

DIR_MODE = 0o2775  # setgid: files made inside keep the directory's group
# (and the sticky bit, 0o1000, if the parent has it: see make_dirs)
FILE_MODE = 0o644  # group and others may read: a shared image is never 0600


@dataclass(frozen=True)
class Entry:
    root: str
    relpath: str
    ref: ImageRef
    size: int
    mtime: float
    atime: float
    #: a provenance file (slurmc.cache.provenance) was seen beside it when it was listed
    has_meta: bool = False

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.relpath)

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        from slurmc.cache.provenance import read_meta

        now = time.time() if now is None else now
        meta = read_meta(self.path) if self.has_meta else {}
        return {
            "reference": display(self.ref),
            "path": self.path,
            "size": self.size,
            "created": self.mtime,
            "last_used": self.atime,
            "age_days": round((now - self.mtime) / 86400, 2),
            "digest": meta.get("digest"),  # the registry's manifest digest at the pull
            "sha256": meta.get("sha256"),
            "pulled_by": meta.get("pulled_by"),
        }


def display(ref: ImageRef) -> str:
    """How a cached reference is shown: familiar (read back as the same image), with its tag."""
    return str(replace(ref, tag=ref.effective_tag))


def ref_from_relpath(relpath: str, runtime: Runtime) -> ImageRef | None:
    """The inverse of ``runtime.cache_relpath``; None for files that are not cached images."""
    original = relpath
    if runtime.suffix:
        if not relpath.endswith(runtime.suffix):
            return None
        relpath = relpath[: -len(runtime.suffix)]
    name = runtime.relpath_to_name(relpath)
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        return None
    try:
        ref = parse_reference(name)
        return ref if runtime.cache_relpath(ref) == original else None
    except InvalidReferenceError:
        return None


def scan(root: str, runtime: Runtime) -> Iterator[Entry]:
    """Every cached image under *root* (hidden names are skipped, but a provenance file
    beside an image is noted, so that listing opens only the ones there are)."""
    from slurmc.cache.provenance import meta_name

    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel_dir) if rel_dir else root)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            listed = list(it)
        hidden = {e.name for e in listed if e.name.startswith(".")}
        for entry in listed:
            if entry.name.startswith("."):
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
                continue
            ref = ref_from_relpath(rel, runtime)
            if ref is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if trusted_link(st):
                    st = entry.stat()  # linked in by you or root: the file it names
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # someone else's link, a FIFO, a socket...: never an image
            has_meta = meta_name(entry.name) in hidden
            yield Entry(root, rel, ref, st.st_size, st.st_mtime, st.st_atime, has_meta)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def trusted_link(st: os.stat_result) -> bool:
    """A symbolic link slurmc may follow: made by the user running it, or by root."""
    return stat.S_ISLNK(st.st_mode) and st.st_uid in (os.geteuid(), 0)


def _open_trusted_link(parent: int, part: str, path: str) -> int:
    """Open the directory a link points to, if the link is trusted; else CacheError."""
    try:
        if trusted_link(os.stat(part, dir_fd=parent, follow_symlinks=False)):
            return os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        pass
    raise _not_a_directory(path)


def _not_a_directory(path: str) -> CacheError:
    return CacheError(
        f"{path} in the cache is not a directory (a symbolic link or a file someone put "
        "there); slurmc never follows links inside a cache: remove it, or ask the cache's "
        "owner to"
    )


def open_dir(root: str, parts: list[str], *, create: bool = False) -> int:
    """An open descriptor of ``root/parts...``, walked without following links.

    The root itself is trusted (it comes from the site file or --cache-dir); each
    component below is opened with ``O_NOFOLLOW|O_DIRECTORY`` relative to its
    parent. With *create*, missing directories are made ``DIR_MODE`` (plus the
    sticky bit if the parent has it) and chmod-ed through the descriptor, only
    when they are ours. Raises CacheError for a link or file in the way, OSError
    for the rest (the caller words it). The caller closes the descriptor.
    """
    if create and not os.path.isdir(root):
        os.makedirs(root, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(root, DIR_MODE)  # a new root: shared like the rest (umask aside)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    path = root
    try:
        for part in parts:
            path = os.path.join(path, part)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                sticky = os.fstat(fd).st_mode & stat.S_ISVTX
                made = False
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)  # opened up below, once it is ours
                    made = True
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        child = _open_trusted_link(fd, part, path)
                    else:
                        raise
                st = os.fstat(child)
                if made and st.st_uid == os.geteuid():  # still the one we made
                    os.fchmod(child, DIR_MODE | sticky)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    child = _open_trusted_link(fd, part, path)
                else:
                    raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def make_dirs(root: str, directory: str) -> None:
    """Create *directory* under *root* with setgid, group-writable directories."""
    rel = os.path.relpath(directory, root)
    os.close(open_dir(root, [] if rel == "." else rel.split(os.sep), create=True))


def is_image_at(dir_fd: int, name: str) -> bool:
    """Whether *name* in the open directory is a regular file (or a trusted link to one)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if trusted_link(st):
            st = os.stat(name, dir_fd=dir_fd)
        return stat.S_ISREG(st.st_mode)
    except OSError:
        return False


def lookup(root: str, relpath: str) -> str | None:
    """``root/relpath`` if it is a regular file reached without links others made."""
    *parts, name = relpath.split("/")
    try:
        fd = open_dir(root, parts)
    except (OSError, ValueError, CacheError):
        return None
    try:
        return os.path.join(root, relpath) if is_image_at(fd, name) else None
    finally:
        os.close(fd)


def touch_used(path: str) -> None:
    """Record a use of an image (its atime), as cheaply as the file system allows."""
    try:
        st = os.stat(path)
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
    except PermissionError:  # another user's file: a one-byte read updates atime (relatime)
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            fh.read(1)
    except OSError:
        pass
