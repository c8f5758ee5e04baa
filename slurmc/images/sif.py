"""The Singularity Image Format (SIF), read from the file itself. Pure: no subprocess.

Layout, as the reference implementation github.com/sylabs/sif writes it
(``pkg/sif/sif.go``, ``descriptor.go``, ``arch.go``). Every integer is
little-endian and the Go structs are packed, without padding:

* global header, 128 bytes: launch script ``[32]byte``, magic ``"SIF_MAGIC\\0"``,
  version ``"01\\0"``, primary architecture ``[3]byte`` (``"02\\0"`` = amd64), image
  UUID ``[16]byte``, then ``int64`` created, modified, descriptors free, descriptors
  total, descriptors offset, descriptors size, data offset, data size;
* a table of ``descriptors total`` descriptors of 585 bytes each: data type
  ``int32`` (0x4001 Def.FILE ... 0x400b OCI.Blob), used ``bool``, ID, group ID and
  linked ID ``uint32`` (group IDs and group links carry the mask 0xf0000000),
  offset, size, size with padding, created, modified, UID, GID ``int64``, name
  ``[128]byte`` and 384 bytes of type-specific "extra" data: for a partition file
  system type, partition type (``int32``) and architecture ``[3]byte``; for a
  signature the hash type (``int32``) and the signing key's fingerprint; for an
  SBOM its format; for OCI objects the blob's digest.

:func:`read_sif` checks what the reference checks (magic, version) and more (the
table and every used object must lie inside the file), so that a truncated or
damaged file is one clear :class:`~slurmc.images.ImageFormatError`.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from slurmc.images import ImageFormatError

HEADER = struct.Struct("<32s10s3s3s16s8q")
DESCRIPTOR = struct.Struct("<iB3I3q4q128s384s")
PARTITION_EXTRA = struct.Struct("<ii3s")
SIGNATURE_EXTRA = struct.Struct("<i20s")
CRYPTO_EXTRA = struct.Struct("<ii")
SBOM_EXTRA = struct.Struct("<i")
assert HEADER.size == 128 and DESCRIPTOR.size == 585

MAGIC = b"SIF_MAGIC\x00"
VERSION = "01"
GROUP_MASK = 0xF0000000
#: more descriptors than any real image has; a bigger table is a damaged header
MAX_DESCRIPTORS = 1 << 16

DEFFILE, ENVVARS, LABELS, PARTITION, SIGNATURE = 0x4001, 0x4002, 0x4003, 0x4004, 0x4005
GENERIC_JSON, GENERIC, CRYPTO_MESSAGE, SBOM = 0x4006, 0x4007, 0x4008, 0x4009
OCI_ROOT_INDEX, OCI_BLOB = 0x400A, 0x400B
#: objects that describe the image rather than hold a file system or a signature
METADATA_TYPES = (DEFFILE, ENVVARS, LABELS, GENERIC_JSON, SBOM)

#: data type codes and the names the reference gives them (``DataType.String``)
DATA_TYPES = {
    DEFFILE: "Def.FILE",
    ENVVARS: "Env.Vars",
    LABELS: "JSON.Labels",
    PARTITION: "FS",
    SIGNATURE: "Signature",
    GENERIC_JSON: "JSON.Generic",
    GENERIC: "Generic/Raw",
    CRYPTO_MESSAGE: "Cryptographic Message",
    SBOM: "SBOM",
    OCI_ROOT_INDEX: "OCI.RootIndex",
    OCI_BLOB: "OCI.Blob",
}
FS_TYPES = {1: "Squashfs", 2: "Ext3", 3: "Archive", 4: "Raw", 5: "Encrypted squashfs"}
FS_SQUASHFS = 1
PART_TYPES = {1: "System", 2: "*System", 3: "Data", 4: "Overlay"}
PART_PRIMSYS = 2
HASH_TYPES = {1: "SHA256", 2: "SHA384", 3: "SHA512", 4: "BLAKE2S", 5: "BLAKE2B"}
FORMAT_TYPES = {1: "OpenPGP", 2: "PEM"}
MESSAGE_TYPES = {0x100: "Clear Signature", 0x200: "RSA-OAEP"}
SBOM_FORMATS = {
    1: "cyclonedx-json",
    2: "cyclonedx-xml",
    3: "github-json",
    4: "spdx-json",
    5: "spdx-rdf",
    6: "spdx-tag-value",
    7: "spdx-yaml",
    8: "syft-json",
}
#: arch.go: header/partition architecture codes and the Go architecture names
ARCHES = {
    b"00": "unknown",
    b"01": "386",
    b"02": "amd64",
    b"03": "arm",
    b"04": "arm64",
    b"05": "ppc64",
    b"06": "ppc64le",
    b"07": "mips",
    b"08": "mipsle",
    b"09": "mips64",
    b"10": "mips64le",
    b"11": "s390x",
    b"12": "riscv64",
}


def _cstr(raw: bytes) -> str:
    return raw.rstrip(b"\x00").split(b"\x00", 1)[0].decode("utf-8", "replace")


def _arch(raw: bytes) -> str:
    return ARCHES.get(raw[:2], "unknown")


@dataclass(frozen=True)
class SifHeader:
    launch_script: str
    version: str
    arch: str
    id: str
    created_at: int
    modified_at: int
    descriptors_free: int
    descriptors_total: int
    descriptors_offset: int
    descriptors_size: int
    data_offset: int
    data_size: int


@dataclass(frozen=True)
class SifDescriptor:
    """One used data object. ``group_id``/``linked_id`` are 0 when there is none."""

    data_type_code: int
    id: int
    group_id: int
    linked_id: int
    link_is_group: bool
    offset: int
    size: int
    size_with_padding: int
    created_at: int
    modified_at: int
    name: str
    #: type-specific fields: fs_type/part_type/arch, hash_type/fingerprint, ...
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def data_type(self) -> str:
        return DATA_TYPES.get(self.data_type_code, "Unknown")

    @property
    def is_primary_partition(self) -> bool:
        return self.data_type_code == PARTITION and self.extra.get("part_type_code") == PART_PRIMSYS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "data_type": self.data_type,
            "data_type_code": self.data_type_code,
            "group": self.group_id,
            "link": self.linked_id,
            "link_is_group": self.link_is_group,
            "offset": self.offset,
            "size": self.size,
            "size_with_padding": self.size_with_padding,
            "created_at": self.created_at,
            "modified_at": self.modified_at,
            "name": self.name,
        }
        out.update({k: v for k, v in self.extra.items() if not k.endswith("_code")})
        return out


@dataclass(frozen=True)
class SifImage:
    path: str
    file_size: int
    header: SifHeader
    descriptors: tuple[SifDescriptor, ...]

    @property
    def primary_partition(self) -> SifDescriptor | None:
        """The primary system partition, as the reference selects it (the first one)."""
        return next((d for d in self.descriptors if d.is_primary_partition), None)

    def of_type(self, code: int) -> list[SifDescriptor]:
        return [d for d in self.descriptors if d.data_type_code == code]

    def to_dict(self) -> dict[str, Any]:
        h = self.header
        return {
            "header": {
                "launch_script": h.launch_script,
                "version": h.version,
                "arch": h.arch,
                "id": h.id,
                "created_at": h.created_at,
                "modified_at": h.modified_at,
                "descriptors_free": h.descriptors_free,
                "descriptors_total": h.descriptors_total,
                "descriptors_offset": h.descriptors_offset,
                "descriptors_size": h.descriptors_size,
                "data_offset": h.data_offset,
                "data_size": h.data_size,
            },
            "descriptors": [d.to_dict() for d in self.descriptors],
        }


def _extra(code: int, raw: bytes) -> dict[str, Any]:
    if code == PARTITION:
        fs, part, arch = PARTITION_EXTRA.unpack_from(raw)
        return {
            "fs_type": FS_TYPES.get(fs, "Unknown"),
            "fs_type_code": fs,
            "part_type": PART_TYPES.get(part, "Unknown"),
            "part_type_code": part,
            "arch": _arch(arch),
        }
    if code == SIGNATURE:
        hash_type, fingerprint = SIGNATURE_EXTRA.unpack_from(raw)
        return {
            "hash_type": HASH_TYPES.get(hash_type, "Unknown"),
            "fingerprint": fingerprint.hex().upper() if any(fingerprint) else None,
        }
    if code == CRYPTO_MESSAGE:
        fmt, msg = CRYPTO_EXTRA.unpack_from(raw)
        return {
            "format": FORMAT_TYPES.get(fmt, "Unknown"),
            "message": MESSAGE_TYPES.get(msg, "Unknown"),
        }
    if code == SBOM:
        (fmt,) = SBOM_EXTRA.unpack_from(raw)
        return {"sbom_format": SBOM_FORMATS.get(fmt, "unknown")}
    if code in (OCI_ROOT_INDEX, OCI_BLOB):
        return {"digest": _cstr(raw)}
    return {}


def parse_header(raw: bytes, file_size: int, where: str) -> SifHeader:
    """Parse and check the 128-byte global header of a file of *file_size* bytes."""
    if len(raw) < 42 or raw[32:42] != MAGIC:
        raise ImageFormatError(f"{where}: not a SIF file (no SIF_MAGIC at byte 32)")
    if len(raw) < HEADER.size:
        raise ImageFormatError(
            f"{where}: truncated SIF file: {len(raw)} bytes, shorter than its 128-byte header"
        )
    (
        launch,
        _,
        version,
        arch,
        ident,
        ctime,
        mtime,
        dfree,
        dtotal,
        doff,
        dsize,
        data_off,
        data_size,
    ) = HEADER.unpack(raw[: HEADER.size])
    ver = _cstr(version)
    if ver != VERSION:
        raise ImageFormatError(
            f"{where}: SIF version {ver!r} is not supported (only {VERSION}); "
            "is the file from a newer Apptainer/SingularityCE?"
        )
    damaged = f"{where}: damaged SIF header:"
    if not 0 <= dtotal <= MAX_DESCRIPTORS or not 0 <= dfree <= dtotal:
        raise ImageFormatError(f"{damaged} {dfree} free of {dtotal} descriptors")
    if dsize != dtotal * DESCRIPTOR.size or doff < HEADER.size:
        raise ImageFormatError(
            f"{damaged} descriptor table of {dsize} bytes at offset {doff} "
            f"for {dtotal} descriptors of {DESCRIPTOR.size} bytes"
        )
    if data_off < 0 or data_size < 0:
        raise ImageFormatError(f"{damaged} data section at {data_off} of {data_size} bytes")
    if doff + dsize > file_size:
        raise ImageFormatError(
            f"{where}: truncated SIF file: its descriptor table ends at byte {doff + dsize}, "
            f"the file has {file_size} bytes"
        )
    return SifHeader(
        launch_script=_cstr(launch),
        version=ver,
        arch=_arch(arch),
        id=str(uuid.UUID(bytes=ident)),
        created_at=ctime,
        modified_at=mtime,
        descriptors_free=dfree,
        descriptors_total=dtotal,
        descriptors_offset=doff,
        descriptors_size=dsize,
        data_offset=data_off,
        data_size=data_size,
    )


def parse_descriptors(
    table: bytes, header: SifHeader, file_size: int, where: str
) -> list[SifDescriptor]:
    """The used descriptors of the table, each checked to lie inside the file."""
    out: list[SifDescriptor] = []
    for i in range(header.descriptors_total):
        (
            code,
            used,
            ident,
            group,
            link,
            offset,
            size,
            padded,
            ctime,
            mtime,
            _uid,
            _gid,
            name,
            extra,
        ) = DESCRIPTOR.unpack_from(table, i * DESCRIPTOR.size)
        if not used:
            continue
        if used != 1:
            raise ImageFormatError(
                f"{where}: damaged SIF descriptor {i}: 'used' flag is {used}, not 0 or 1"
            )
        if offset < 0 or size < 0 or offset + size > file_size:
            raise ImageFormatError(
                f"{where}: truncated SIF file: object {ident} ({DATA_TYPES.get(code, 'Unknown')}) "
                f"is bytes {offset}-{offset + size}, the file has {file_size} bytes"
            )
        out.append(
            SifDescriptor(
                data_type_code=code,
                id=ident,
                group_id=group & ~GROUP_MASK & 0xFFFFFFFF,
                linked_id=link & ~GROUP_MASK & 0xFFFFFFFF,
                link_is_group=link & GROUP_MASK == GROUP_MASK,
                offset=offset,
                size=size,
                size_with_padding=padded,
                created_at=ctime,
                modified_at=mtime,
                name=_cstr(name),
                extra=_extra(code, extra),
            )
        )
    return out


def read_sif_from(f: BinaryIO, file_size: int, where: str) -> SifImage:
    """Read the header and descriptor table from an open file (two reads)."""
    f.seek(0)
    header = parse_header(f.read(HEADER.size), file_size, where)
    f.seek(header.descriptors_offset)
    table = f.read(header.descriptors_size)
    if len(table) < header.descriptors_size:
        raise ImageFormatError(f"{where}: truncated SIF file: short descriptor table")
    descriptors = parse_descriptors(table, header, file_size, where)
    return SifImage(where, file_size, header, tuple(descriptors))


def read_sif(path: str) -> SifImage:
    """Read a SIF file's global header and every used descriptor."""
    try:
        with open(path, "rb") as f:
            return read_sif_from(f, os.fstat(f.fileno()).st_size, path)
    except OSError as exc:
        raise ImageFormatError(f"{path}: cannot read: {exc.strerror}") from None


def read_object(path: str, descriptor: SifDescriptor, limit: int = 1 << 20) -> bytes:
    """The data of a (small) object; objects larger than *limit* are refused."""
    if descriptor.size > limit:
        raise ImageFormatError(
            f"{path}: SIF object {descriptor.id} has {descriptor.size} bytes, "
            f"more than the {limit} this reads"
        )
    try:
        with open(path, "rb") as f:
            f.seek(descriptor.offset)
            data = f.read(descriptor.size)
    except OSError as exc:
        raise ImageFormatError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) != descriptor.size:
        raise ImageFormatError(f"{path}: truncated SIF file: object {descriptor.id} is cut short")
    return data


def read_labels(path: str, image: SifImage) -> dict[str, Any] | None:
    """The JSON labels object, when the image has one and it is valid JSON."""
    for d in image.of_type(LABELS):
        try:
            value = json.loads(read_object(path, d))
        except (ValueError, RecursionError, ImageFormatError):
            return None
        return value if isinstance(value, dict) else None
    return None
