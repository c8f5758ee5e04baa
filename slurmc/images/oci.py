"""OCI images: an OCI archive (a tar of an OCI layout), an OCI layout directory, or a
``docker save`` archive, read with the standard library.

The index (``index.json``, or Docker's ``manifest.json``) leads to a manifest, its
config (architecture, Env, labels) and its layers. The layers are tar files applied
in order, with OCI whiteouts (``.wh.NAME`` hides NAME, ``.wh..wh..opq`` hides what
lower layers put in a directory). An uncompressed layer is read by seeking over
its members' data; a compressed one has to be decompressed once, start to end
(a tar stream has no index), which is what it costs to read any tar.gz.
"""

from __future__ import annotations

import json
import os
import platform
import posixpath
import re
import tarfile
from dataclasses import dataclass, field
from typing import IO, Any

from slurmc.images import ImageFormatError
from slurmc.images.layers import Layer, LayerTree, Opener
from slurmc.images.tree import MAX_READ

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}
_BLOB = re.compile(r"\A([a-z0-9]+):([a-f0-9]{32,})\Z")
_COMPRESSED = {b"\x1f\x8b": "gzip", b"\x28\xb5": "zstd", b"\xfd\x37": "xz", b"BZ": "bzip2"}


@dataclass
class OciImage:
    path: str
    format: str  # "oci-archive" | "oci-layout" | "docker-archive"
    config: dict[str, Any]
    layers: list[Layer]
    manifest_digest: str | None = None
    tags: list[str] = field(default_factory=list)
    _archive: tarfile.TarFile | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        items = (self.config.get("config") or {}).get("Env") or []
        return dict(e.split("=", 1) for e in items if isinstance(e, str) and "=" in e)

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config.get("config") or {}
        return {
            "format": self.format,
            "manifest_digest": self.manifest_digest,
            "tags": self.tags,
            "architecture": self.config.get("architecture"),
            "os": self.config.get("os"),
            "created": self.config.get("created"),
            "env": cfg.get("Env") or [],
            "labels": cfg.get("Labels") or {},
            "entrypoint": cfg.get("Entrypoint"),
            "cmd": cfg.get("Cmd"),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def tree(self) -> LayerTree:
        return LayerTree(self.path, self.layers)

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()


# ------------------------------------------------------------------ opening


_REF_NAME = "org.opencontainers.image.ref.name"
#: index -> index -> ... nesting allowed before the manifest (real images use 1 or 2)
MAX_INDEX_DEPTH = 8


def _json(raw: bytes, where: str, want: type = dict) -> Any:
    """Parse JSON from a crafted file: bad syntax, deep nesting or the wrong type of the
    top value is an ImageFormatError naming the file, never a traceback."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ImageFormatError(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:
        raise ImageFormatError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, want):
        raise ImageFormatError(
            f"{where}: a JSON {type(data).__name__} where a {want.__name__} was expected"
        )
    return data


def _field(obj: dict[str, Any], key: str, want: type, where: str) -> Any:
    """``obj[key]`` if it is of type *want*; None if absent; ImageFormatError otherwise."""
    value = obj.get(key)
    if value is None or (isinstance(value, want) and not isinstance(value, bool)):
        return value
    raise ImageFormatError(
        f"{where}: {key!r} is a JSON {type(value).__name__}, not a {want.__name__}"
    )


def _size(desc: dict[str, Any], where: str) -> int:
    size = _field(desc, "size", int, where) or 0
    if size < 0:
        raise ImageFormatError(f"{where}: negative size {size}")
    return int(size)


def _check_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    inner = _field(config, "config", dict, where) or {}
    _field(inner, "Env", list, where)
    _field(inner, "Labels", dict, where)
    return config


def _host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", _GOARCH.get(machine, machine)


def _choose(manifests: list[dict[str, Any]], where: str) -> dict[str, Any]:
    def platform_of(m: dict[str, Any]) -> dict[str, Any]:
        p = m.get("platform")
        return p if isinstance(p, dict) else {}

    usable = [
        m
        for m in manifests
        if isinstance(m, dict)
        and platform_of(m).get("architecture") != "unknown"
        and isinstance(m.get("digest"), str)
    ]
    if not usable:
        raise ImageFormatError(f"{where}: the image index lists no usable manifest")
    want_os, want_arch = _host_platform()
    for m in usable:
        p = platform_of(m)
        if p.get("os", want_os) == want_os and p.get("architecture", want_arch) == want_arch:
            return m
    return usable[0]


class _BlobStore:
    """Blobs of an OCI layout, in a directory or inside a tar archive."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.archive: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if not os.path.isdir(path):
            try:
                self.archive = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by OciImage.close)
                for m in self.archive.getmembers():
                    self.members[posixpath.normpath(m.name.lstrip("/"))] = m
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ImageFormatError(f"{path}: damaged or truncated archive ({exc})") from None

    def has(self, name: str) -> bool:
        if self.archive is None:
            return os.path.isfile(os.path.join(self.path, name))
        return name in self.members

    def size(self, name: str) -> int | None:
        if self.archive is None:
            try:
                return os.path.getsize(os.path.join(self.path, name))
            except OSError:
                return None
        member = self.members.get(name)
        return member.size if member else None

    def opener(self, name: str) -> Opener:
        if self.archive is None:
            full = os.path.join(self.path, name)
            if not os.path.isfile(full):
                raise ImageFormatError(f"{self.path}: {name} is missing from the OCI layout")
            return lambda: open(full, "rb")
        member = self.members.get(name)
        if member is None:
            raise ImageFormatError(f"{self.path}: {name} is missing from the archive")
        archive = self.archive

        def open_member() -> IO[bytes]:
            f = archive.extractfile(member)
            if f is None:
                raise ImageFormatError(f"{self.path}: {name} is not a file in the archive")
            return f

        return open_member

    def read(self, name: str, limit: int = MAX_READ) -> bytes:
        try:
            with self.opener(name)() as f:
                data = f.read(limit + 1)
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise ImageFormatError(f"{self.path}: cannot read {name} ({exc})") from None
        if len(data) > limit:
            raise ImageFormatError(f"{self.path}: {name} is larger than {limit} bytes")
        return data

    def blob_name(self, digest: str) -> str:
        m = _BLOB.match(digest or "")
        if not m:
            raise ImageFormatError(f"{self.path}: invalid digest {digest!r}")
        return f"blobs/{m.group(1)}/{m.group(2)}"


def open_oci(path: str) -> OciImage:
    """Open an OCI archive/layout or a docker-archive; read its index, manifest and config."""
    store = _BlobStore(path)
    kind = "oci-layout" if store.archive is None else "oci-archive"
    if store.has("index.json"):
        where = f"{path}: index.json"
        index = _json(store.read("index.json"), where)
        desc = _choose(list(_field(index, "manifests", list, where) or []), where)
        seen: set[str] = set()
        while str(desc.get("mediaType")) in INDEX_TYPES:  # an index of indexes (multi-platform)
            digest = str(desc.get("digest"))
            if digest in seen or len(seen) >= MAX_INDEX_DEPTH:
                raise ImageFormatError(
                    f"{path}: image index {digest} leads back to itself or nests more than "
                    f"{MAX_INDEX_DEPTH} deep; the image is damaged"
                )
            seen.add(digest)
            name = store.blob_name(digest)
            where = f"{path}: {name}"
            nested = _json(store.read(name), where)
            desc = _choose(list(_field(nested, "manifests", list, where) or []), where)
        name = store.blob_name(str(desc["digest"]))
        where = f"{path}: {name}"
        manifest = _json(store.read(name), where)
        config_desc = _field(manifest, "config", dict, where) or {}
        config_name = store.blob_name(str(config_desc.get("digest", "")))
        config = _check_config(
            _json(store.read(config_name), f"{path}: {config_name}"), f"{path}: {config_name}"
        )
        layers = []
        for lay in _field(manifest, "layers", list, where) or []:
            if not isinstance(lay, dict):
                raise ImageFormatError(f"{where}: a layer is a JSON {type(lay).__name__}")
            digest = str(lay.get("digest", ""))
            layers.append(
                Layer(
                    digest=digest,
                    media_type=str(lay.get("mediaType", "")),
                    size=_size(lay, where),
                    open=store.opener(store.blob_name(digest)),
                )
            )
        for lay in layers:
            have = store.size(store.blob_name(lay.digest))
            if have is not None and lay.size and have != lay.size:
                raise ImageFormatError(
                    f"{path}: layer {lay.digest} has {have} bytes, its manifest says "
                    f"{lay.size}: the image is damaged or truncated"
                )
        annotations = desc.get("annotations")
        ref = annotations.get(_REF_NAME) if isinstance(annotations, dict) else None
        ref = ref if isinstance(ref, str) else None
        return OciImage(
            path, kind, config, layers, desc.get("digest"), [ref] if ref else [], store.archive
        )
    if store.archive is not None and store.has("manifest.json"):
        where = f"{path}: manifest.json"
        entries = _json(store.read("manifest.json"), where, list)
        if not entries or not isinstance(entries[0], dict):
            raise ImageFormatError(f"{path}: manifest.json lists no image")
        entry = entries[0]
        config_where = f"{path}: {entry.get('Config')}"
        config = _check_config(
            _json(store.read(str(entry.get("Config", ""))), config_where), config_where
        )
        layers = []
        for name in _field(entry, "Layers", list, where) or []:
            norm = posixpath.normpath(str(name))
            member = store.members.get(norm)
            layers.append(
                Layer(
                    norm,
                    "application/vnd.docker.image.rootfs.diff.tar",
                    member.size if member else 0,
                    store.opener(norm),
                )
            )
        return OciImage(
            path,
            "docker-archive",
            config,
            layers,
            None,
            [t for t in _field(entry, "RepoTags", list, where) or [] if isinstance(t, str)],
            store.archive,
        )
    if store.archive is not None:
        store.archive.close()
    raise ImageFormatError(
        f"{path}: neither an OCI layout (index.json) nor a docker-archive (manifest.json)"
    )
