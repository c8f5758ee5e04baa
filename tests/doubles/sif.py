#!/usr/bin/env python3
"""Minimal reader and writer of the Singularity Image Format (SIF), stdlib only.

Used by the Apptainer/Singularity test doubles: they carve the primary system
partition (a SquashFS image) out of a SIF file and hand it to Charliecloud's ch-run,
and `pull` packs a SquashFS image into a SIF file.

Command line:
    sif.py primary FILE.sif        print "OFFSET SIZE" of the primary system partition
    sif.py list FILE.sif           print the header and every used descriptor as JSON
    sif.py pack IN.sqfs OUT.sif    write a SIF file whose primary partition is IN.sqfs

Layout, from the reference implementation github.com/sylabs/sif (pkg/sif/sif.go,
descriptor.go, create.go, load.go, arch.go). Every integer is little-endian and the
Go structs are written with encoding/binary, i.e. packed, without padding:

  global header (128 bytes), sif.go `header`:
    LaunchScript [32]byte   "#!/usr/bin/env run-singularity\n", NUL padded
    Magic        [10]byte   "SIF_MAGIC\0"
    Version      [3]byte    "01\0"   (CurrentVersion = 1, formatted "%02d")
    Arch         [3]byte    "02\0" = amd64 (arch.go: 00 unknown, 01 386, 02 amd64, ...)
    ID           [16]byte   UUID
    CreatedAt, ModifiedAt   int64 (Unix seconds)
    DescriptorsFree, DescriptorsTotal, DescriptorsOffset, DescriptorsSize,
    DataOffset, DataSize    int64

  descriptor (585 bytes), descriptor.go `rawDescriptor`:
    DataType int32 (0x4001 Deffile ... 0x4004 Partition ... 0x400b OCI.Blob)
    Used bool (1 byte)
    ID, GroupID, LinkedID uint32   (GroupID and LinkedID carry the 0xf0000000 group mask)
    Offset, Size, SizeWithPadding int64
    CreatedAt, ModifiedAt, UID, GID int64
    Name [128]byte
    Extra [384]byte; for a partition: Fstype int32 (1 = Squashfs), Parttype int32
          (1 System, 2 PrimSys, 3 Data, 4 Overlay), Arch [3]byte

create.go: descriptors start at 4096 (default capacity 48), data starts right after
the descriptor table (4096 + 48*585 = 32176), and each object is written at the next
offset aligned to its alignment (partitions: 4096), SizeWithPadding counting the gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import struct
import sys
import tempfile
import time
import uuid

HEADER = struct.Struct("<32s10s3s3s16s8q")
DESCRIPTOR = struct.Struct("<i?3I3q4q128s384s")
PARTITION_EXTRA = struct.Struct("<ii3s")
assert HEADER.size == 128 and DESCRIPTOR.size == 585

LAUNCH_SCRIPT = b"#!/usr/bin/env run-singularity\n"
MAGIC = b"SIF_MAGIC\x00"
VERSION = b"01\x00"
DESCR_GROUP_MASK = 0xF0000000

DATA_TYPES = {
    0x4001: "Def.FILE",
    0x4002: "Env.Vars",
    0x4003: "JSON.Labels",
    0x4004: "FS",
    0x4005: "Signature",
    0x4006: "JSON.Generic",
    0x4007: "Generic/Raw",
    0x4008: "Cryptographic Message",
    0x4009: "SBOM",
    0x400A: "OCI.RootIndex",
    0x400B: "OCI.Blob",
}
DATA_PARTITION = 0x4004
FS_TYPES = {1: "Squashfs", 2: "Ext3", 3: "Archive", 4: "Raw", 5: "Encrypted squashfs"}
FS_SQUASH = 1
PART_TYPES = {1: "System", 2: "*System", 3: "Data", 4: "Overlay"}
PART_PRIMSYS = 2
# arch.go: SIF architecture codes and the Go architecture they stand for.
ARCH_CODES = {
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
MACHINE_TO_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
SQUASHFS_MAGIC = b"hsqs"


class SifError(Exception):
    """The file is not a SIF file we can read, or an object is missing or damaged."""


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


def read_header(f, size: int) -> dict:
    raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise SifError("reading global header: unexpected EOF")
    (
        launch,
        magic,
        version,
        arch,
        ident,
        ctime,
        mtime,
        dfree,
        dtotal,
        descroff,
        descrlen,
        dataoff,
        datalen,
    ) = HEADER.unpack(raw)
    if magic != MAGIC:
        raise SifError("invalid SIF magic")
    if version != VERSION:
        raise SifError("incompatible SIF version")
    if dtotal < 0 or descroff < HEADER.size or descrlen != dtotal * DESCRIPTOR.size:
        raise SifError("invalid descriptor table in global header")
    if descroff + descrlen > size:
        raise SifError("reading descriptors: unexpected EOF (file truncated)")
    if dataoff < descroff + descrlen or datalen < 0 or dataoff + datalen > size:
        raise SifError("data section lies outside the file (file truncated)")
    return {
        "launch": _cstr(launch),
        "version": _cstr(version),
        "arch": ARCH_CODES.get(arch[:2], "unknown"),
        "id": str(uuid.UUID(bytes=ident)),
        "ctime": ctime,
        "mtime": mtime,
        "dfree": dfree,
        "dtotal": dtotal,
        "descroff": descroff,
        "descrlen": descrlen,
        "dataoff": dataoff,
        "datalen": datalen,
    }


def read_descriptors(f, header: dict, size: int) -> list[dict]:
    f.seek(header["descroff"])
    table = f.read(header["descrlen"])
    if len(table) < header["descrlen"]:
        raise SifError("reading descriptors: unexpected EOF (file truncated)")
    out = []
    for i in range(header["dtotal"]):
        (
            dtype,
            used,
            ident,
            group,
            link,
            offset,
            dsize,
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
        d = {
            "id": ident,
            "datatype": DATA_TYPES.get(dtype, "Unknown"),
            "datatype_code": dtype,
            "group": group & ~DESCR_GROUP_MASK & 0xFFFFFFFF,
            "link": link & ~DESCR_GROUP_MASK & 0xFFFFFFFF,
            "link_is_group": bool(link & DESCR_GROUP_MASK == DESCR_GROUP_MASK),
            "offset": offset,
            "size": dsize,
            "size_with_padding": padded,
            "ctime": ctime,
            "mtime": mtime,
            "name": _cstr(name),
        }
        if dtype == DATA_PARTITION:
            fstype, parttype, arch = PARTITION_EXTRA.unpack_from(extra)
            d["fstype"] = FS_TYPES.get(fstype, "Unknown")
            d["parttype"] = PART_TYPES.get(parttype, "Unknown")
            d["arch"] = ARCH_CODES.get(arch[:2], "unknown")
            d["_fstype"], d["_parttype"] = fstype, parttype
        if offset < 0 or dsize < 0 or offset + dsize > size:
            d["truncated"] = True
        out.append(d)
    return out


def load(path: str) -> tuple[dict, list[dict]]:
    """Return (header, used descriptors); raise SifError on a bad or truncated file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = read_header(f, size)
            return header, read_descriptors(f, header, size)
    except OSError as e:
        raise SifError(f"{e.strerror}: {path}") from None


def primary_partition(path: str) -> tuple[int, int]:
    """(offset, size) of the primary system partition, checked to be a whole SquashFS."""
    _, descriptors = load(path)
    prim = [
        d
        for d in descriptors
        if d["datatype_code"] == DATA_PARTITION and d.get("_parttype") == PART_PRIMSYS
    ]
    if not prim:
        if any(d["datatype"] == "OCI.RootIndex" for d in descriptors):
            raise SifError("OCI-SIF image, which is not supported")
        raise SifError("could not find the primary system partition")
    d = prim[0]
    if d["_fstype"] != FS_SQUASH:
        raise SifError(f"unsupported primary partition filesystem: {d['fstype']}")
    if d.get("truncated"):
        raise SifError("primary partition lies outside the file (file truncated)")
    with open(path, "rb") as f:
        f.seek(d["offset"])
        if f.read(4) != SQUASHFS_MAGIC:
            raise SifError("primary partition is not a squashfs filesystem")
    return d["offset"], d["size"]


def pack(squashfs: str, out: str, arch: str | None = None) -> tuple[int, int]:
    """Write a one-object SIF file whose primary system partition is `squashfs`.

    Follows create.go: 48 descriptors at 4096, data at 4096 + 48*585, the partition
    aligned to 4096. Written to a temporary file and renamed into place."""
    with open(squashfs, "rb") as f:
        if f.read(4) != SQUASHFS_MAGIC:
            raise SifError(f"not a squashfs filesystem: {squashfs}")
    size = os.path.getsize(squashfs)
    goarch = arch or MACHINE_TO_GOARCH.get(platform.machine(), "unknown")
    code = {v: k for k, v in ARCH_CODES.items()}.get(goarch, b"00") + b"\x00"
    now = int(time.time())
    capacity, descroff, align = 48, 4096, 4096
    descrlen = capacity * DESCRIPTOR.size
    dataoff = descroff + descrlen
    offset = (dataoff + align - 1) // align * align
    padded = offset - dataoff + size
    header = HEADER.pack(
        LAUNCH_SCRIPT,
        MAGIC,
        VERSION,
        code,
        uuid.uuid4().bytes,
        now,
        now,
        capacity - 1,
        capacity,
        descroff,
        descrlen,
        dataoff,
        padded,
    )
    extra = PARTITION_EXTRA.pack(FS_SQUASH, PART_PRIMSYS, code)
    name = os.path.basename(squashfs).encode()[:128]
    descr = DESCRIPTOR.pack(
        DATA_PARTITION,
        True,
        1,
        DESCR_GROUP_MASK | 1,
        0,
        offset,
        size,
        padded,
        now,
        now,
        0,
        0,
        name,
        extra,
    )
    outdir = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".sif-pack.", dir=outdir)
    try:
        with os.fdopen(fd, "wb") as f, open(squashfs, "rb") as src:
            f.write(header)
            f.seek(descroff)
            f.write(descr)
            f.write(b"\x00" * (descrlen - DESCRIPTOR.size))
            f.seek(offset)
            while chunk := src.read(1 << 20):
                f.write(chunk)
        os.chmod(tmp, 0o755)  # create.go opens the image with mode 0755
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return offset, size


USAGE = "usage: sif.py primary FILE.sif | list FILE.sif | pack IN.sqfs OUT.sif"


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 3 and argv[1] == "primary":
            offset, size = primary_partition(argv[2])
            print(offset, size)
        elif len(argv) == 3 and argv[1] == "list":
            header, descriptors = load(argv[2])
            for d in descriptors:
                for k in [k for k in d if k.startswith("_")]:
                    del d[k]
            print(json.dumps({"header": header, "descriptors": descriptors}, indent=1))
        elif len(argv) == 4 and argv[1] == "pack":
            offset, size = pack(argv[2], argv[3])
            print(offset, size)
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except SifError as e:
        print(f"sif.py: {argv[2]}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"sif.py: {e.filename or argv[-1]}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
