"""The two-call contract every image reader implements, and the glob matching it uses.

:meth:`FileTree.find` lists the files and symlinks matching glob patterns,
:meth:`FileTree.read` returns the bytes of some of them; readers: SquashFS through
squashfs-tools (:mod:`slurmc.images.squashfs`), OCI layers (:mod:`slurmc.images.oci`),
a directory (:class:`DirectoryTree`), a dict in tests (:class:`MemoryTree`).

Patterns are ``/``-separated, matched a component at a time with shell globbing
(``*`` never crosses ``/``, and a leading ``*`` or ``?`` does not match a leading
dot), as squashfs-tools matches its extract patterns.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

#: largest metadata file read (a conda-meta record of a big package is a few MB)
MAX_READ = 64 << 20

FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"


@dataclass(frozen=True)
class Entry:
    """One file-system entry; *path* is relative to the image root (no leading ``/``)."""

    path: str
    kind: str
    size: int = 0
    target: str | None = None  # for symlinks


class FileTree(Protocol):
    def find(self, patterns: Sequence[str]) -> list[Entry]:
        """Non-directory entries whose whole path matches one of *patterns*."""
        ...

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        """Contents of the regular files among *paths*; the others are left out."""
        ...


# ------------------------------------------------------------------ pattern matching


def component_match(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def path_match(path: str, pattern: str) -> bool:
    parts, pats = path.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(map(component_match, parts, pats))


def _glob_rx(comp: str) -> str:
    out, i = [], 0
    while i < len(comp):
        c = comp[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif (
            c == "[" and (j := comp.find("]", i + 2 if comp[i + 1 : i + 2] in "!^" else i + 1)) > i
        ):
            body = comp[i + 1 : j]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    lead = "" if comp.startswith(".") else r"(?!\.)"
    return lead + "".join(out)


def compile_patterns(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regular expression matching a path when it matches any of *patterns*."""
    alts = ["/".join(_glob_rx(c) for c in p.strip("/").split("/")) for p in patterns]
    return re.compile("(?:" + "|".join(f"(?:{a})" for a in alts) + r")\Z" if alts else r"(?!)")


def walk(listdir: Callable[[str], Iterable[Entry] | None], patterns: Sequence[str]) -> list[Entry]:
    """Find the entries matching *patterns*, listing only directories a pattern can reach.

    *listdir(path)* gives the entries of directory *path* ("" is the root), or None
    when it is not a directory.
    """
    found: dict[str, Entry] = {}

    def descend(directory: str, pats: list[list[str]]) -> None:
        entries = listdir(directory)
        if entries is None:
            return
        for entry in entries:
            name = entry.path.rsplit("/", 1)[-1]
            deeper = [p[1:] for p in pats if component_match(name, p[0])]
            if not deeper:
                continue
            if any(not rest for rest in deeper) and entry.kind != DIR:
                found[entry.path] = entry
            rest = [r for r in deeper if r]
            if rest and entry.kind == DIR:
                descend(entry.path, rest)

    descend("", [p.strip("/").split("/") for p in patterns])
    return sorted(found.values(), key=lambda e: e.path)


class MemoryTree:
    """A file tree held in a dict: ``{path: bytes}`` for files, ``{path: Link(target)}``."""

    def __init__(self, files: Mapping[str, bytes | Link]) -> None:
        self.files = {p.strip("/"): v for p, v in files.items()}
        self.dirs: dict[str, set[str]] = {"": set()}
        for path in self.files:
            parts = path.split("/")
            for i in range(1, len(parts) + 1):
                parent, child = "/".join(parts[: i - 1]), "/".join(parts[:i])
                self.dirs.setdefault(parent, set()).add(child)
                if i < len(parts):
                    self.dirs.setdefault(child, set())

    def _entry(self, path: str) -> Entry:
        if path in self.dirs and path not in self.files:
            return Entry(path, DIR)
        value = self.files[path]
        if isinstance(value, Link):
            return Entry(path, SYMLINK, len(value.target), value.target)
        return Entry(path, FILE, len(value))

    def listdir(self, path: str) -> list[Entry] | None:
        if path not in self.dirs:
            return None
        return [self._entry(p) for p in sorted(self.dirs[path])]

    def find(self, patterns: Sequence[str]) -> list[Entry]:
        return walk(self.listdir, patterns)

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        return {p: v for p in paths if isinstance(v := self.files.get(p), bytes)}


@dataclass(frozen=True)
class Link:
    target: str


class DirectoryTree:
    """A root file system unpacked in a directory (a sandbox, a Charliecloud image dir).

    Symlinks are reported, never followed, so nothing outside the root is read.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def listdir(self, path: str) -> list[Entry] | None:
        try:
            it = os.scandir(os.path.join(self.root, path) if path else self.root)
        except OSError:
            return None
        out = []
        with it:
            for d in it:
                rel = f"{path}/{d.name}" if path else d.name
                try:
                    if d.is_symlink():
                        out.append(Entry(rel, SYMLINK, 0, os.readlink(d.path)))
                    elif d.is_dir(follow_symlinks=False):
                        out.append(Entry(rel, DIR))
                    elif d.is_file(follow_symlinks=False):
                        out.append(Entry(rel, FILE, d.stat(follow_symlinks=False).st_size))
                    else:
                        out.append(Entry(rel, OTHER))
                except OSError:
                    continue
        return out

    def find(self, patterns: Sequence[str]) -> list[Entry]:
        return walk(self.listdir, patterns)

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        out = {}
        for p in paths:
            full = os.path.join(self.root, p)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            try:
                with open(full, "rb") as fh:
                    out[p] = fh.read(MAX_READ)
            except OSError:
                continue
        return out
