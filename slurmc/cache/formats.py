"""Is this file a whole image? Cheap checks of the formats the cache publishes.

Each check reads a few bytes (headers, a tar index), never the whole image:
SIF's magic and descriptor bounds, SquashFS's superblock (its ``bytes_used``
must fit in the file, which catches a truncated pull), an OCI archive's
``oci-layout`` and ``index.json``.
"""

from __future__ import annotations

import json
import os
import struct
import tarfile

from slurmc.errors import CacheError

SIF_MAGIC = b"SIF_MAGIC\0"
SQUASHFS_MAGIC = b"hsqs"


def check_squashfs(path: str, offset: int = 0) -> None:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        fh.seek(offset)
        sb = fh.read(96)
    if len(sb) < 96 or sb[:4] != SQUASHFS_MAGIC:
        raise CacheError(f"{path}: not a SquashFS image (no superblock)")
    major = struct.unpack_from("<H", sb, 28)[0]
    bytes_used = struct.unpack_from("<Q", sb, 40)[0]
    if major != 4:
        raise CacheError(f"{path}: SquashFS version {major} is not supported (want 4)")
    if offset + bytes_used > size:
        raise CacheError(
            f"{path}: truncated SquashFS image ({size - offset} of {bytes_used} bytes present)"
        )


def check_sif(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(128)
    if len(head) < 128 or head[32:42] != SIF_MAGIC:
        raise CacheError(f"{path}: not a SIF image (no SIF_MAGIC header)")
    # global header: ... dataoff (int64 at 112), datalen (int64 at 120)
    data_off, data_len = struct.unpack_from("<qq", head, 112)
    if data_off < 0 or data_len < 0 or data_off + data_len > size:
        raise CacheError(
            f"{path}: truncated SIF image ({size} bytes, data ends at {data_off + data_len})"
        )


def check_oci_archive(path: str) -> None:
    try:
        with tarfile.open(path) as tar:
            names = {m.name.lstrip("./") for m in tar.getmembers()}
            if "oci-layout" not in names or "index.json" not in names:
                raise CacheError(f"{path}: not an OCI archive (no oci-layout/index.json)")
            index = tar.extractfile("index.json") or tar.extractfile("./index.json")
            data = json.load(index) if index is not None else None
            if not isinstance(data, dict) or not data.get("manifests"):
                raise CacheError(f"{path}: OCI archive without manifests")
            blobs = {n for n in names if n.startswith("blobs/")}
            if not blobs:
                raise CacheError(f"{path}: OCI archive without blobs")
    except RecursionError:
        raise CacheError(f"{path}: OCI archive whose index.json is nested too deeply") from None
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise CacheError(f"{path}: not a readable OCI archive ({exc})") from None


def check_image(path: str, fmt: str) -> None:
    """Raise CacheError unless *path* is a complete image of format *fmt*."""
    if not os.path.isfile(path):
        raise CacheError(f"{path}: no image file was written")
    {"sif": check_sif, "squashfs": check_squashfs, "oci-archive": check_oci_archive}[fmt](path)


def detect_format(path: str) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[32:42] == SIF_MAGIC:
        return "sif"
    if head[:4] == SQUASHFS_MAGIC:
        return "squashfs"
    if len(head) >= 1:
        try:
            if tarfile.is_tarfile(path):
                return "oci-archive"
        except OSError:
            return None
    return None
