"""Job records: one JSON file per submission, on the user's side.

Where: ``$XDG_STATE_HOME/slurmc/jobs/`` (default ``~/.local/state/slurmc/jobs/``),
named ``<job id>.<cluster>.json``. Why this shape, on a home directory that is often
NFS or Lustre shared by every login node:

- one file per job, written once under a temporary name in the same directory and
  renamed into place (``rename(2)`` is atomic on every POSIX file system, NFS
  included): a reader sees the old file or the new one, never half of one;
- no shared database and so no lock: SQLite over NFS needs working POSIX locks,
  which ``nolock`` mounts and Lustre without ``-o flock`` do not give. Two slurmc
  processes on two login nodes never write the same file, except for updates of one
  record (its final state, its image digest) where the last writer wins and the
  loser's field is simply computed again later;
- mode 0600 in a 0700 directory: a record holds the script, with its environment
  values.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from slurmc.core.record import (
    MAX_JOB_ID,
    MAX_RECORD_BYTES,
    SCHEMA,
    Final,
    ImageInfo,
    Record,
    check_job_id,
    damage,
    new_record,
    record_name,
    submitted_epoch,
)
from slurmc.paths import state_home

__all__ = [
    "MAX_JOB_ID",
    "MAX_RECORD_BYTES",
    "SCHEMA",
    "Final",
    "ImageInfo",
    "Record",
    "check_job_id",
    "damage",
    "new_record",
    "record_name",
    "submitted_epoch",
]


# ---- where -------------------------------------------------------------------------------


def jobs_dir(env: Mapping[str, str]) -> Path:
    return state_home(env) / "jobs"


# ---- reading and writing -------------------------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    """Write *data* to *path* atomically: a temporary name in the same directory, then rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write(env: Mapping[str, str], record: Record) -> Path:
    where = record.get("cluster") or record.get("site") or "unknown"
    path = jobs_dir(env) / record_name(record["job_id"], where)
    write_json(path, record)
    return path


def read(path: Path) -> tuple[Record | None, str | None]:
    """``(record, None)``, or ``(None, why)`` for a file that is not a sound record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if st.st_size > MAX_RECORD_BYTES:
            return None, f"{st.st_size} bytes, too big for a record"
        raw = os.read(fd, MAX_RECORD_BYTES + 1)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError as exc:  # UnicodeDecodeError included
        return None, f"not valid JSON ({exc})"
    why = damage(data)
    return (None, why) if why else (data, None)


def load(path: Path) -> Record | None:
    """A record, or None when the file is unreadable or not a sound slurmc record."""
    return read(path)[0]


def update(path: Path, **fields: Any) -> Record | None:
    """Read, change and rewrite one record (last writer wins; see the module's notes)."""
    record = load(path)
    if record is None:
        return None
    record.update(cast(Record, fields))
    write_json(path, record)
    return record


def all_records(
    env: Mapping[str, str], on_damaged: Callable[[Path, str], None] | None = None
) -> Iterator[tuple[Path, Record]]:
    """Every sound record, newest submission first; *on_damaged* hears of the others."""
    d = jobs_dir(env)
    try:
        names = [n for n in os.listdir(d) if n.endswith(".json") and not n.startswith(".")]
    except FileNotFoundError:
        return
    found = []
    for name in names:
        rec, why = read(d / name)
        if rec is not None:
            found.append((d / name, rec))
        elif why and on_damaged is not None:
            on_damaged(d / name, why)
    found.sort(key=lambda pr: (str(pr[1].get("submitted_at", "")), pr[0].name), reverse=True)
    yield from found


#: clock skew allowed between a record's submission time (the submitting host's clock)
#: and its file's mtime (the file server's)
_SKEW = 3600.0


def newest_records(
    env: Mapping[str, str], n: int, on_damaged: Callable[[Path, str], None] | None = None
) -> list[tuple[Path, Record]]:
    """The *n* newest sound records (by submission), newest first, reading only what is
    needed: on a home directory holding every job a user ever ran, parsing them all on
    each ``slurmc jobs`` grows with the years.

    Files are read newest modification first. A record's file is written at submission
    and rewritten later (its final state), so its mtime is never before its submission:
    once *n* records are in hand and the next file's mtime is older than the n-th
    newest submission (less a clock-skew margin), no file left can be newer."""
    if n <= 0:
        return list(all_records(env, on_damaged))
    d = jobs_dir(env)
    try:
        with os.scandir(d) as it:
            files = []
            for e in it:
                if e.name.endswith(".json") and not e.name.startswith("."):
                    with contextlib.suppress(OSError):
                        files.append((e.stat(follow_symlinks=False).st_mtime, e.name))
    except FileNotFoundError:
        return []
    files.sort(reverse=True)
    found: list[tuple[float, str, Path, Record]] = []
    for mtime, name in files:
        if len(found) >= n:
            found.sort(key=lambda f: (f[0], f[1]), reverse=True)
            del found[n:]
            if mtime < found[-1][0] - _SKEW:
                break
        rec, why = read(d / name)
        if rec is not None:
            found.append((submitted_epoch(rec), name, d / name, rec))
        elif why and on_damaged is not None:
            on_damaged(d / name, why)
    found.sort(key=lambda f: (str(f[3].get("submitted_at", "")), f[1]), reverse=True)
    return [(path, rec) for _, _, path, rec in found[:n]]


def find(
    env: Mapping[str, str],
    job_id: str,
    cluster: str | None = None,
    on_damaged: Callable[[Path, str], None] | None = None,
) -> list[tuple[Path, Record]]:
    """The records of *job_id* (one per cluster it was seen on), optionally on *cluster*."""
    check_job_id(job_id)
    d = jobs_dir(env)
    out = []
    for path in sorted(d.glob(f"{job_id}.*.json")):
        rec, why = read(path)
        if rec is None and why and on_damaged is not None:
            on_damaged(path, why)
        if rec is None or str(rec.get("job_id")) != job_id:
            continue
        if cluster is not None and rec.get("cluster") != cluster:
            continue
        out.append((path, rec))
    return out
