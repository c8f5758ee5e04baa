"""SquashFS file systems, alone or at an offset inside a SIF file, via squashfs-tools.

The superblock (96 bytes) is read here, in Python, to say what the file system is
and to refuse a truncated or foreign one with a clear message before any tool runs.
Listing and reading go through ``unsquashfs`` (Debian/RHEL ``squashfs-tools``), in
two processes whatever the image's size:

* ``unsquashfs -o OFFSET -llc FILE PATTERN...`` lists only what the patterns reach:
  unsquashfs walks the directory table down the matching components only, so the
  cost is that of the metadata asked for, not of the image;
* ``unsquashfs -o OFFSET -no-wildcards -d TMP -ef LIST FILE`` extracts just the
  listed metadata files into a private temporary directory, read and removed.

Why squashfs-tools rather than a Python SquashFS reader: measured in
``docs/inspect.md`` (and ``bench/inspect_bench.py``). In short, it handles every
compressor SquashFS images use (Enroot's default is lzo, which Python's standard
library cannot read), it reads only the directories the patterns reach, and it is
what Apptainer and Charliecloud sites already have.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slurmc import proc
from slurmc.errors import ExternalCommandError, ToolMissingError
from slurmc.images import ImageFormatError
from slurmc.images.tree import DIR, FILE, OTHER, SYMLINK, Entry, compile_patterns

SUPERBLOCK = struct.Struct("<5I6H8Q")
assert SUPERBLOCK.size == 96
MAGIC = 0x73717368  # "hsqs", little-endian
COMPRESSORS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
TOOL = "unsquashfs"
TIMEOUT = 600.0
_ROOT = "squashfs-root"
_LINE = re.compile(
    r"^(?P<mode>[-dlcbps][-rwxsStT]{9})\s+\S+\s+(?P<size>\d+|\d+,\s*\d+)\s+"
    r"\d{4}-\d\d-\d\d \d\d:\d\d (?P<path>.*)$"
)


@dataclass(frozen=True)
class Superblock:
    inodes: int
    block_size: int
    compression: str
    version: str
    bytes_used: int
    created: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "inodes": self.inodes,
            "block_size": self.block_size,
            "compression": self.compression,
            "version": self.version,
            "bytes_used": self.bytes_used,
            "created": self.created,
        }


def read_superblock(path: str, offset: int = 0, limit: int | None = None) -> Superblock:
    """Read and check the superblock of the SquashFS at *offset* in *path*.

    *limit* is the number of bytes the file system may take (a SIF partition's
    size); by default the rest of the file.
    """
    where = f"{path}" + (f" (SquashFS at offset {offset})" if offset else "")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset)
            raw = f.read(SUPERBLOCK.size)
    except OSError as exc:
        raise ImageFormatError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) < 4 or struct.unpack_from("<I", raw)[0] != MAGIC:
        raise ImageFormatError(f"{where}: not a SquashFS file system (no 'hsqs' magic)")
    if len(raw) < SUPERBLOCK.size:
        raise ImageFormatError(f"{where}: truncated SquashFS: the superblock is cut short")
    (_, inodes, mtime, block_size, _, comp, block_log, _, _, major, minor, *rest) = (
        SUPERBLOCK.unpack(raw)
    )
    bytes_used = rest[1]
    if major != 4:
        raise ImageFormatError(f"{where}: SquashFS version {major}.{minor} is not supported (4.x)")
    if not 4096 <= block_size <= 1 << 20 or block_size != 1 << block_log:
        raise ImageFormatError(f"{where}: damaged SquashFS superblock (block size {block_size})")
    room = (size - offset) if limit is None else min(limit, size - offset)
    if bytes_used > room:
        raise ImageFormatError(
            f"{where}: truncated SquashFS: it needs {bytes_used} bytes, "
            f"{'the partition' if limit is not None else 'the file'} has {room}"
        )
    if comp not in COMPRESSORS:
        raise ImageFormatError(f"{where}: unknown SquashFS compressor id {comp}")
    return Superblock(inodes, block_size, COMPRESSORS[comp], f"{major}.{minor}", bytes_used, mtime)


def _kind(mode: str) -> str:
    return {"-": FILE, "d": DIR, "l": SYMLINK}.get(mode[0], OTHER)


def parse_listing(text: str) -> list[Entry]:
    """Entries from ``unsquashfs -llc``/``-lls`` output (paths under ``squashfs-root``)."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        path = m.group("path")
        if path == _ROOT:
            continue
        if not path.startswith(_ROOT + "/"):
            continue
        path = path[len(_ROOT) + 1 :]
        kind = _kind(m.group("mode"))
        target = None
        if kind == SYMLINK:
            path, _, target = path.partition(" -> ")
        size = m.group("size")
        out.append(Entry(path, kind, int(size) if size.isdigit() else 0, target))
    return out


class SquashfsTree:
    """A :class:`~slurmc.images.tree.FileTree` over a SquashFS image file."""

    def __init__(self, path: str, offset: int = 0, limit: int | None = None) -> None:
        self.path = path
        self.offset = offset
        self.superblock = read_superblock(path, offset, limit)

    def _run(self, args: Sequence[str], what: str) -> proc.Result:
        argv = [TOOL, "-o", str(self.offset), *args]
        try:
            return proc.run(argv, timeout=TIMEOUT)
        except ToolMissingError:
            raise ToolMissingError(
                f"{TOOL} not found on PATH; install squashfs-tools "
                "(apt-get install squashfs-tools / dnf install squashfs-tools)"
            ) from None
        except UnicodeDecodeError:  # proc.run decodes output as UTF-8
            raise ImageFormatError(
                f"{self.path}: a file name in the SquashFS file system is not UTF-8; "
                "use --exec to list its packages"
            ) from None
        except ExternalCommandError as exc:
            lines = [ln.strip() for ln in exc.stderr.splitlines() if ln.strip()]
            detail = " | ".join(lines[-2:]) or f"exit {exc.returncode}"
            raise ImageFormatError(
                f"{self.path}: cannot {what} the SquashFS file system "
                f"(damaged image?): {TOOL}: {detail}"
            ) from None

    def find(self, patterns: Sequence[str]) -> list[Entry]:
        pats = [p.strip("/") for p in patterns if p.strip("/")]
        if not pats:
            return []
        result = self._run(["-llc", self.path, *pats], "list")
        rx = compile_patterns(pats)
        return [e for e in parse_listing(result.stdout) if rx.match(e.path)]

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        paths = sorted({p.strip("/") for p in paths if p.strip("/") and "\n" not in p})
        if not paths:
            return {}
        tmp = tempfile.mkdtemp(prefix="slurmc-inspect-")
        try:
            listfile = os.path.join(tmp, "extract.list")
            with open(listfile, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write("".join(p + "\n" for p in paths))
            dest = os.path.join(tmp, "root")
            self._run(
                ["-n", "-no-xattrs", "-no-wildcards", "-d", dest, "-ef", listfile, self.path],
                "read",
            )
            out = {}
            for p in paths:
                full = os.path.join(dest, p)
                if os.path.isfile(full) and not os.path.islink(full):
                    with open(full, "rb") as fh:
                        out[p] = fh.read()
            return out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
