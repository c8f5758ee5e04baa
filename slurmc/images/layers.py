"""An image's layers read as one tree: tar files applied in order, with OCI whiteouts
(``.wh.NAME`` hides NAME, ``.wh..wh..opq`` hides what lower layers put in a directory).

:mod:`slurmc.images.oci` finds the layers (an OCI archive or layout, a docker archive);
this module merges them into a :class:`~slurmc.images.tree.FileTree`.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from slurmc.images import ImageFormatError
from slurmc.images.tree import DIR, FILE, MAX_READ, OTHER, SYMLINK, Entry, compile_patterns

_COMPRESSED = {b"\x1f\x8b": "gzip", b"\x28\xb5": "zstd", b"\xfd\x37": "xz", b"BZ": "bzip2"}

Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Layer:
    digest: str
    media_type: str
    size: int
    open: Opener = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "media_type": self.media_type, "size": self.size}


# ------------------------------------------------------------------ layers as one tree


def _norm(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return "" if name == "." else name


def _entry(path: str, m: tarfile.TarInfo) -> Entry:
    if m.isdir():
        return Entry(path, DIR)
    if m.issym():
        return Entry(path, SYMLINK, len(m.linkname), m.linkname)
    if m.isfile() or m.islnk():
        return Entry(path, FILE, m.size)
    return Entry(path, OTHER)


class LayerTree:
    """A :class:`~slurmc.images.tree.FileTree` over an image's layers, merged."""

    def __init__(self, path: str, layers: Sequence[Layer]) -> None:
        self.path = path
        self.layers = list(layers)
        self._merged: dict[str, Entry] | None = None
        self._data: dict[str, bytes] = {}

    def _members(
        self, layer: Layer, want: Callable[[str], bool]
    ) -> Iterator[tuple[str, tarfile.TarInfo | None, bytes | None]]:
        """Yield (path, TarInfo, data-or-None) for each member; data for wanted files."""
        if layer.media_type.endswith("+zstd"):
            raise ImageFormatError(
                f"{self.path}: layer {layer.digest} is zstd-compressed, which slurmc cannot "
                "read without a container runtime; use --exec"
            )
        try:
            with layer.open() as raw:
                head = raw.read(2)
                raw.seek(0)
                comp = _COMPRESSED.get(head)
                if comp == "zstd":
                    raise ImageFormatError(
                        f"{self.path}: layer {layer.digest} is zstd-compressed; use --exec"
                    )
                mode = "r|*" if comp else "r:"  # plain tar: seek over file data
                with tarfile.open(fileobj=raw, mode=mode) as tf:  # type: ignore[call-overload]
                    links: dict[str, str] = {}
                    got: dict[str, bytes] = {}
                    for m in tf:
                        path = _norm(m.name)
                        if not path:
                            continue
                        data = None
                        if m.isfile() and m.size <= MAX_READ and want(path):
                            f = tf.extractfile(m)
                            data = f.read() if f is not None else None
                            if data is not None:
                                got[path] = data
                        elif m.islnk() and want(path):
                            links[path] = _norm(m.linkname)
                        yield path, m, data
                    for path, target in links.items():
                        if target in got:
                            yield path, None, got[target]
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ImageFormatError(
                f"{self.path}: layer {layer.digest or '?'} is damaged or truncated ({exc})"
            ) from None

    def _scan(self, want: Callable[[str], bool]) -> tuple[dict[str, Entry], dict[str, bytes]]:
        merged: dict[str, Entry] = {}
        data_of: dict[str, bytes] = {}
        for layer in self.layers:
            added: dict[str, Entry] = {}
            added_data: dict[str, bytes] = {}
            hide: list[str] = []
            opaque: list[str] = []
            for path, m, data in self._members(layer, want):
                if m is None:  # a hard link's data, after its target was read
                    if data is not None:
                        added_data[path] = data
                    continue
                d, base = posixpath.split(path)
                if base == ".wh..wh..opq":
                    opaque.append(d)
                elif base.startswith(".wh."):
                    hide.append(posixpath.join(d, base[4:]))
                else:
                    added[path] = _entry(path, m)
                    data_of.pop(path, None)
                    if data is not None:
                        added_data[path] = data
            for gone in hide:
                for p in [p for p in merged if p == gone or p.startswith(gone + "/")]:
                    del merged[p]
                    data_of.pop(p, None)
            for d in opaque:
                for p in [p for p in merged if p.startswith(d + "/")]:
                    del merged[p]
                    data_of.pop(p, None)
            merged.update(added)
            data_of.update(added_data)
        return merged, data_of

    def find(self, patterns: Sequence[str]) -> list[Entry]:
        rx = compile_patterns(patterns)
        if self._merged is None:
            self._merged, self._data = self._scan(lambda p: rx.match(p) is not None)
        return sorted(
            (e for p, e in self._merged.items() if e.kind != DIR and rx.match(p)),
            key=lambda e: e.path,
        )

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        missing = [p for p in paths if p not in self._data]
        if missing and self._merged is not None:
            wanted = {p for p in missing if self._merged.get(p, Entry(p, OTHER)).kind == FILE}
            if wanted:  # a second pass over the layers, only when needed
                _, more = self._scan(lambda p: p in wanted)
                self._data.update({p: d for p, d in more.items() if p in wanted})
        return {p: self._data[p] for p in paths if p in self._data}
