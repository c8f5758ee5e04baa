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

The image: the record keeps the file's identity at submission (real path, size,
mtime, ctime, inode, device) and its sha256 when that is cheap (small files, or a
digest already computed for this very file). A big image is hashed later, on demand
by ``slurmc jobs show`` or in the background of ``slurmc run --wait``, and only if its
identity is unchanged: a file's ctime cannot be set by its owner, so an unchanged
identity means unchanged content. Submitting therefore never reads 20 GB from a
shared file system, and "which exact image did job 1234 run?" has an answer as
long as the file is unchanged (and if it changed, the record says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from slurmc.errors import ValidationError
from slurmc.paths import state_home

SCHEMA = 1
#: Images up to this size are hashed at submission (about 0.1 s); bigger ones later.
DIGEST_AT_SUBMIT_MAX = 64 << 20
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_JOB_ID = re.compile(r"([0-9]+)(?:_([0-9]+))?\Z", re.ASCII)
#: Slurm job ids are uint32 and 0xfffffffe/0xffffffff mean NO_VAL/INFINITE; scancel
#: truncates a bigger number to 32 bits (4294967296 + J cancels J), so refuse it here.
MAX_JOB_ID = 0xFFFFFFFD

Record = dict[str, Any]


# ---- where -------------------------------------------------------------------------------


def jobs_dir(env: Mapping[str, str]) -> Path:
    return state_home(env) / "jobs"


def digests_dir(env: Mapping[str, str]) -> Path:
    return state_home(env) / "digests"


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


# ---- the image file ----------------------------------------------------------------------


def image_identity(path: str, source: str) -> dict[str, Any]:
    """What is needed later to tell whether *path* is still the file the job ran."""
    info: dict[str, Any] = {"path": path, "source": source}
    if source == "uri":
        info["kind"] = "uri"
        return info
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        info["kind"] = "missing"  # e.g. pulled by the job itself, after submission
        return info
    info.update(
        kind="directory" if os.path.isdir(real) else "file",
        realpath=real,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        device=st.st_dev,
    )
    return info


_IDENTITY = ("realpath", "size", "mtime_ns", "ctime_ns", "inode", "device")


def check_image(image: Mapping[str, Any]) -> tuple[str, str]:
    """``("unchanged"|"changed"|"gone"|"not-a-file", detail)`` for a recorded image."""
    kind = image.get("kind")
    if kind not in ("file", "directory"):
        return "not-a-file", f"{kind}: nothing to verify"
    now = image_identity(image["path"], image.get("source", "path"))
    if now.get("kind") == "missing":
        return "gone", f"{image.get('realpath')} no longer exists"
    diffs = [k for k in _IDENTITY if now.get(k) != image.get(k)]
    if not diffs:
        return "unchanged", "size, mtime, ctime, inode and device as at submission"
    return "changed", "differs from submission in " + ", ".join(diffs)


def sha256_file(
    path: str,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> str | None:
    """The file's sha256, read in 4 MiB blocks; None if *stop* was set meanwhile."""
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while True:
            if stop is not None and stop.is_set():
                return None
            block = f.read(4 << 20)
            if not block:
                break
            h.update(block)
            done += len(block)
            if progress:
                progress(done)
    return h.hexdigest()


def _digest_key(image: Mapping[str, Any]) -> str:
    ident = "\0".join(str(image.get(k)) for k in _IDENTITY)
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def cached_digest(env: Mapping[str, str], image: Mapping[str, Any]) -> str | None:
    """A digest computed before for a file with exactly this identity."""
    try:
        data = json.loads((digests_dir(env) / f"{_digest_key(image)}.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if all(data.get(k) == image.get(k) for k in _IDENTITY) and isinstance(data.get("sha256"), str):
        return str(data["sha256"])
    return None


def remember_digest(env: Mapping[str, str], image: Mapping[str, Any], digest: str) -> None:
    data = {k: image.get(k) for k in _IDENTITY}
    data["sha256"] = digest
    with contextlib.suppress(OSError):  # only a cache
        write_json(digests_dir(env) / f"{_digest_key(image)}.json", data)


def digest_at_submit(env: Mapping[str, str], image: dict[str, Any]) -> None:
    """Fill ``image["sha256"]`` now when that is cheap: known already, or a small file."""
    if image.get("kind") != "file":
        return
    digest = cached_digest(env, image)
    if digest is None:
        limit = _int_env(env, "SLURMC_DIGEST_SUBMIT_MAX", DIGEST_AT_SUBMIT_MAX)
        if image["size"] > limit:
            return
        try:
            digest = sha256_file(image["realpath"])
        except OSError:
            return
        if digest is None or check_image(image)[0] != "unchanged":
            return
        remember_digest(env, image, digest)
    image["sha256"] = digest
    image["sha256_when"] = "submission"


def compute_digest(
    env: Mapping[str, str],
    image: dict[str, Any],
    *,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Hash a recorded image that has no digest yet, if it is unchanged since submission.

    Returns True when ``image`` got a digest. The identity is checked before and after
    reading, so a file changed meanwhile never gets a digest attributed to the job.
    """
    if image.get("sha256") or image.get("kind") != "file":
        return False
    if check_image(image)[0] != "unchanged":
        return False
    digest = cached_digest(env, image)
    if digest is None:
        try:
            digest = sha256_file(image["realpath"], stop=stop, progress=progress)
        except OSError:
            return False
        if digest is None or check_image(image)[0] != "unchanged":
            return False
        remember_digest(env, image, digest)
    image["sha256"] = digest
    image["sha256_when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return True


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise ValidationError(f"{name}={text!r} is invalid; expected a size in bytes")
    return int(text)


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


def new_record(**fields: Any) -> Record:
    return {"schema": SCHEMA, **fields}


def write(env: Mapping[str, str], record: Record) -> Path:
    where = record.get("cluster") or record.get("site") or "unknown"
    path = jobs_dir(env) / record_name(record["job_id"], where)
    write_json(path, record)
    return path


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
    record.update(fields)
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


def submitted_epoch(record: Record) -> float:
    """The record's submission time in seconds since the epoch (0 when unreadable)."""
    import datetime as dt

    try:
        when = dt.datetime.strptime(str(record.get("submitted_at", "")), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return 0.0
    return when.timestamp()


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


class BackgroundDigest:
    """Hashes a record's image in a thread (used while ``run --wait`` is idle anyway)."""

    def __init__(self, env: Mapping[str, str], path: Path) -> None:
        self.env = dict(env)
        self.path = path
        self.stop = threading.Event()
        self.done = False
        self.thread = threading.Thread(target=self._run, name="slurmc-digest", daemon=True)

    def start(self) -> BackgroundDigest:
        self.thread.start()
        return self

    def _run(self) -> None:
        record = load(self.path)
        if record is None:
            return
        image = dict(record.get("image") or {})
        if compute_digest(self.env, image, stop=self.stop) and not self.stop.is_set():
            try:
                update(self.path, image=image)
                self.done = True
            except OSError:
                pass

    def finish(self) -> None:
        """Stop hashing (nothing is written for an unfinished digest) and wait for the thread."""
        self.stop.set()
        self.thread.join()
