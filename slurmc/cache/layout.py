"""Where images live in a cache root, and what a root holds.

A root holds one file per image at ``runtime.cache_relpath(ref)``; names that
start with ``.`` are slurmc's own (locks, pulls in progress) and are never
images. Listing walks the tree with ``os.scandir`` (one ``stat`` per entry).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ..errors import InvalidReferenceError
from ..refs import ImageRef, parse_reference
from ..runtimes import Runtime

DIR_MODE = 0o2775  # setgid: files made inside keep the directory's group
FILE_MODE = 0o644  # group and others may read: a shared image is never 0600


@dataclass(frozen=True)
class Entry:
    root: str
    relpath: str
    ref: ImageRef
    size: int
    mtime: float
    atime: float

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.relpath)

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        return {
            "reference": display(self.ref),
            "path": self.path,
            "size": self.size,
            "created": self.mtime,
            "last_used": self.atime,
            "age_days": round((now - self.mtime) / 86400, 2),
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
    """Every cached image under *root* (hidden names are skipped)."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel_dir) if rel_dir else root)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for entry in it:
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
                    st = entry.stat()
                except OSError:
                    continue
                yield Entry(root, rel, ref, st.st_size, st.st_mtime, st.st_atime)


def make_dirs(root: str, directory: str) -> None:
    """Create *directory* under *root* with setgid, group-writable directories."""
    missing = []
    d = directory
    while not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, DIR_MODE)
            os.chmod(d, DIR_MODE)  # the umask may have taken bits away


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
