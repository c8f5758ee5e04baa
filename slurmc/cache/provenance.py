"""What a cached image is: the registry's manifest digest when it was pulled, when, by
whom, its size and sha256, kept beside it as ``.NAME.meta.json`` (group-readable).

A tag can move (pyxis#108): the file named after ``pytorch:24.01-py3`` may no longer be
what the registry serves. The digest recorded at the pull is what ``slurmc cache ls``
shows, what ``slurmc cache pull --refresh`` compares with the registry's answer now,
and what job records carry.

Another member of the cache's group can write these files: reading one never follows a
link, reads at most a few KiB, and keeps only fields of the expected shape (a digest is
``ALGORITHM:HEX``, nothing else), so a planted file can make slurmc show no digest, but
never a forged-looking value with control characters, nor run anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from typing import Any

META_MAX = 64 << 10
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,128}\Z")
_HEX64 = re.compile(r"[a-f0-9]{64}\Z")
_TEXT = re.compile(r"[\x20-\x7e]{1,200}\Z")


#: a sidecar being written: ``.NAME.meta.HOST.PID.RAND.tmp`` (what a killed writer leaves)
TEMP = re.compile(r"\..+\.meta\.(?P<host>[^/]+)\.(?P<pid>[0-9]+)\.[0-9a-f]+\.tmp\Z")


def meta_name(name: str) -> str:
    """The sidecar's name for the image file *name* (hidden: never listed as an image)."""
    return f".{name}.meta.json"


def sha256_at(dir_fd: int, name: str) -> str:
    """The sha256 of the regular file *name* in *dir_fd* (no link followed)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_meta(dir_fd: int, name: str, data: dict[str, Any]) -> None:
    """Write the sidecar of *name* atomically (a temporary name, then rename), mode 0644.
    Failing to is not an error of the pull: the image is there either way."""
    from slurmc.cache.lock import HOST

    tmp = f".{name}.meta.{HOST}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
        os.fchmod(fd, 0o644)  # whatever the umask: the group reads it
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.rename(tmp, meta_name(name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)


def remove_meta(dir_fd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(meta_name(name), dir_fd=dir_fd)


def read_meta(image_path: str) -> dict[str, Any]:
    """The checked fields of *image_path*'s sidecar ({} when there is none or it is not
    sound): ``digest``, ``sha256``, ``size``, ``pulled_at``, ``pulled_by``, ``source``."""
    directory, name = os.path.split(image_path)
    path = os.path.join(directory, meta_name(name))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        raw = os.read(fd, META_MAX + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(raw) > META_MAX:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(data.get("digest"), str) and _DIGEST.match(data["digest"]):
        out["digest"] = data["digest"]
    if isinstance(data.get("sha256"), str) and _HEX64.match(data["sha256"]):
        out["sha256"] = data["sha256"]
    if isinstance(data.get("size"), int) and not isinstance(data["size"], bool):
        out["size"] = data["size"]
    for key in ("pulled_at", "pulled_by", "source"):
        if isinstance(data.get(key), str) and _TEXT.match(data[key]):
            out[key] = data[key]
    return out
