"""The job record's schema: what one ``<job id>.<cluster>.json`` file holds.

Typed for readers (:class:`Record` and its parts are ``TypedDict``s: mypy checks
every key a reader asks for) and checked on every read (:func:`damage`): records live
in the user's home for years, so old files (fewer keys) are read as they are, and a
damaged or foreign file is skipped with a reason, never half-used. Where records are
kept, and how they are written, is :mod:`slurmc.usecases.records`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any, TypedDict

from slurmc.errors import ValidationError

SCHEMA = 1
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_JOB_ID = re.compile(r"([0-9]+)(?:_([0-9]+))?\Z", re.ASCII)
#: Slurm job ids are uint32 and 0xfffffffe/0xffffffff mean NO_VAL/INFINITE; scancel
#: truncates a bigger number to 32 bits (4294967296 + J cancels J), so refuse it here.
MAX_JOB_ID = 0xFFFFFFFD
#: the file identity that tells whether an image is still the file a job ran
IDENTITY = ("realpath", "size", "mtime_ns", "ctime_ns", "inode", "device")


def identity_of(real: str, st: os.stat_result) -> dict[str, Any]:
    """A file's identity (:data:`IDENTITY`) from its real path and ``os.stat`` result: an
    unchanged identity means unchanged content, as a file's ctime cannot be set by its
    owner (job records, image facts)."""
    return {
        "realpath": real,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }


class ImageInfo(TypedDict, total=False):
    """The image a job ran: what was asked for, and the file's identity at submission."""

    path: str
    source: str  # "path" | "catalog" | "cache" | "missing" | "uri"
    kind: str  # "file" | "directory" | "missing" | "uri"
    spec: str
    runtime: str
    realpath: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int
    sha256: str
    sha256_when: str  # "submission", or when it was computed later
    registry_digest: str  # the manifest digest the registry served at the pull (cached images)


class Final(TypedDict, total=False):
    """How the job ended, once slurmc has learnt it."""

    state: str
    exit_code: int | None
    signal: int | None
    source: str
    seen_at: str


class Record(TypedDict, total=False):
    """One submitted job (schema 1; every key may be missing from an older file)."""

    schema: int
    job_id: str
    cluster: str | None
    site: str
    site_source: str
    tag: str
    comment: str | None
    user_comment: str | None
    submitted_at: str
    submit_host: str
    cwd: str
    command: list[str]
    command_line: str
    job_name: str | None
    partition: str | None
    account: str | None
    array: str | None
    output: str | None
    error: str | None
    output_pattern: str | None
    image: ImageInfo
    script: str
    submit_attempts: int
    recovered_by_tag: bool
    final: Final | None


def record_name(job_id: str, cluster: str) -> str:
    return f"{job_id}.{_SAFE.sub('_', cluster) or 'unknown'}.json"


def check_job_id(text: str) -> str:
    """A job id (``1234`` or ``1234_5``): ASCII digits within Slurm's 32-bit range."""
    m = _JOB_ID.match(text)
    if not m:
        raise ValidationError(f"{text!r} is not a job id; expected digits such as 1234")
    if any(int(part) > MAX_JOB_ID for part in m.groups() if part) or int(m.group(1)) == 0:
        raise ValidationError(
            f"{text!r} is not a job id: Slurm's ids run from 1 to {MAX_JOB_ID} "
            "(a bigger number would be cut to 32 bits by scancel and name another job)"
        )
    return text


def new_record(**fields: Any) -> Record:
    record: Record = {"schema": SCHEMA, **fields}  # type: ignore[typeddict-item]
    return record


_STR_FIELDS = [
    "cluster",
    "site",
    "site_source",
    "tag",
    "comment",
    "user_comment",
    "submitted_at",
    "submit_host",
    "cwd",
    "command_line",
    "job_name",
    "partition",
    "account",
    "array",
    "output",
    "error",
    "output_pattern",
    "script",
]
_IMAGE_INTS = ("size", "mtime_ns", "ctime_ns", "inode", "device")
#: a record is a few KiB; anything much bigger is not one of ours
MAX_RECORD_BYTES = 4 << 20


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def damage(data: Any) -> str | None:
    """What makes *data* unusable as a job record (wrong types...), or None if it is sound.

    Readers rely on these types, so a record that fails here is skipped, not half-used.
    """
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    job_id = data.get("job_id")
    if not (isinstance(job_id, str) or _is_int(job_id)):
        return f"job_id is {job_id!r}, not a job id"
    try:
        check_job_id(str(job_id))
    except ValidationError:
        return f"job_id is {job_id!r}, not a job id"
    for key in _STR_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"{key} is a JSON {type(data[key]).__name__}, not a string"
    command = data.get("command")
    if command is not None and not (
        isinstance(command, list) and all(isinstance(c, str) for c in command)
    ):
        return "command is not a list of strings"
    image = data.get("image")
    if image is not None:
        if not isinstance(image, dict):
            return f"image is a JSON {type(image).__name__}, not an object"
        for key in _IMAGE_INTS:
            if image.get(key) is not None and not _is_int(image[key]):
                return f"image.{key} is {image[key]!r}, not a whole number"
        for key, value in image.items():
            if key not in _IMAGE_INTS and value is not None and not isinstance(value, str):
                return f"image.{key} is a JSON {type(value).__name__}, not a string"
    final = data.get("final")
    if final is not None:
        if not isinstance(final, dict):
            return f"final is {final!r}, not an object"
        if final.get("state") is not None and not isinstance(final["state"], str):
            return "final.state is not a string"
        for key in ("exit_code", "signal"):
            if final.get(key) is not None and not _is_int(final[key]):
                return f"final.{key} is {final[key]!r}, not a whole number"
    for key in ("schema", "submit_attempts"):
        if data.get(key) is not None and not _is_int(data[key]):
            return f"{key} is {data[key]!r}, not a whole number"
    return None


def submitted_epoch(record: Record) -> float:
    """The record's submission time in seconds since the epoch (0 when unreadable)."""
    try:
        when = dt.datetime.strptime(str(record.get("submitted_at", "")), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return 0.0
    return when.timestamp()
