"""Which exact image did a job run: the file's identity at submission, and its sha256.

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
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from slurmc.core.record import (
    IDENTITY,
    ImageInfo,
    identity_of,
)
from slurmc.errors import ValidationError
from slurmc.paths import state_home
from slurmc.usecases.records import load, update, write_json

#: Images up to this size are hashed at submission (about 0.1 s); bigger ones later.
DIGEST_AT_SUBMIT_MAX = 64 << 20


def digests_dir(env: Mapping[str, str]) -> Path:
    return state_home(env) / "digests"


# ---- the image file ----------------------------------------------------------------------


def image_identity(path: str, source: str) -> ImageInfo:
    """What is needed later to tell whether *path* is still the file the job ran."""
    info: ImageInfo = {"path": path, "source": source}
    if source == "uri":
        info["kind"] = "uri"
        return info
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        info["kind"] = "missing"  # e.g. pulled by the job itself, after submission
        return info
    info["kind"] = "directory" if os.path.isdir(real) else "file"
    info.update(identity_of(real, st))  # type: ignore[typeddict-item]
    return info


def check_image(image: ImageInfo) -> tuple[str, str]:
    """``("unchanged"|"changed"|"gone"|"not-a-file", detail)`` for a recorded image."""
    kind = image.get("kind")
    if kind not in ("file", "directory"):
        return "not-a-file", f"{kind}: nothing to verify"
    now = image_identity(image["path"], image.get("source", "path"))
    if now.get("kind") == "missing":
        return "gone", f"{image.get('realpath')} no longer exists"
    diffs = [k for k in IDENTITY if now.get(k) != image.get(k)]
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


def _digest_key(image: ImageInfo) -> str:
    ident = "\0".join(str(image.get(k)) for k in IDENTITY)
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def cached_digest(env: Mapping[str, str], image: ImageInfo) -> str | None:
    """A digest computed before for a file with exactly this identity."""
    try:
        data = json.loads((digests_dir(env) / f"{_digest_key(image)}.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if all(data.get(k) == image.get(k) for k in IDENTITY) and isinstance(data.get("sha256"), str):
        return str(data["sha256"])
    return None


def remember_digest(env: Mapping[str, str], image: ImageInfo, digest: str) -> None:
    data = {k: image.get(k) for k in IDENTITY}
    data["sha256"] = digest
    with contextlib.suppress(OSError):  # only a cache
        write_json(digests_dir(env) / f"{_digest_key(image)}.json", data)


def digest_at_submit(env: Mapping[str, str], image: ImageInfo) -> None:
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
    image: ImageInfo,
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
        image: ImageInfo = {**(record.get("image") or {})}
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
