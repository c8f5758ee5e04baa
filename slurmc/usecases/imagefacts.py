"""Static facts of image files, remembered per file identity.

``conda = "auto"`` needs to know, at every submission, whether the image defines
``$WITH_CONDA``; learning it means reading the image (``unsquashfs`` for SquashFS and
SIF, about 35 ms). The answer depends only on the file's content, so it is kept in
``$XDG_CACHE_HOME/slurmc/image-facts/`` (default ``~/.cache/slurmc/image-facts/``)
keyed on the file's identity: real path, size, mtime, ctime, inode and device, the
same identity job records use. A file's ctime cannot be set by its owner, so an
unchanged identity means unchanged content; any change (a new pull, ``cache add
--force``, a copy over it) is a new identity and the image is read again.

Only the user's own processes read and write these files (a 0700 directory; each
file written under a temporary name and renamed, so a reader sees a whole file or
none). A file that cannot be read or parsed is a miss, never an error: this is only
a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slurmc.core.record import IDENTITY, identity_of
from slurmc.paths import cache_home

_MISSING = object()


def facts_dir(env: Mapping[str, str]) -> Path:
    return cache_home(env) / "image-facts"


def identity(path: str) -> dict[str, Any] | None:
    """The identity of the regular file at *path*, or None (gone, a directory, ...)."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    if not os.path.isfile(real):
        return None
    return identity_of(real, st)


def _file(env: Mapping[str, str], ident: Mapping[str, Any]) -> Path:
    key = "\0".join(str(ident[k]) for k in IDENTITY)
    return facts_dir(env) / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def recall(env: Mapping[str, str], ident: Mapping[str, Any], name: str) -> Any:
    """The fact *name* remembered for a file of exactly this identity, else ``_MISSING``."""
    try:
        with open(_file(env, ident), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return _MISSING
    if not isinstance(data, dict) or any(data.get(k) != ident[k] for k in IDENTITY):
        return _MISSING
    facts = data.get("facts")
    if not isinstance(facts, dict) or name not in facts:
        return _MISSING
    return facts[name]


def remember(env: Mapping[str, str], ident: Mapping[str, Any], **facts: Any) -> None:
    """Add *facts* to what is remembered for this identity (best effort)."""
    path = _file(env, ident)
    old: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, RecursionError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and all(data.get(k) == ident[k] for k in IDENTITY):
            known = data.get("facts")
            old = known if isinstance(known, dict) else {}
    record = {**{k: ident[k] for k in IDENTITY}, "facts": {**old, **facts}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


#: the facts read from an image at once, and what each is for
FACTS = (
    "with_conda",  # the $WITH_CONDA it defines, or None (conda = "auto")
    "ch_environment",  # it holds /ch/environment (ch-run --set-env)
)


def facts(env: Mapping[str, str], path: str) -> dict[str, Any] | None:
    """The image's static facts (see FACTS), or None when it cannot be read.

    Remembered per identity; only a readable image's answer is remembered (an image
    that cannot be read now may be readable once its pull finishes)."""
    ident = identity(path)
    if ident is not None:
        known = {name: recall(env, ident, name) for name in FACTS}
        if all(v is not _MISSING for v in known.values()) and _valid(known):
            return known
    from slurmc.errors import SlurmcError
    from slurmc.images import ImageFormatError
    from slurmc.usecases.inspect import inspect_image  # reads the image: only on a miss

    try:
        contents = inspect_image(path).contents
    except (SlurmcError, ImageFormatError, OSError):
        return None
    found = {
        "with_conda": contents.with_conda,
        "ch_environment": "ch/environment" in contents.env_files,
    }
    if ident is not None and identity(path) == ident:
        remember(env, ident, **found)
    return found


def _valid(known: Mapping[str, Any]) -> bool:
    return (known["with_conda"] is None or isinstance(known["with_conda"], str)) and isinstance(
        known["ch_environment"], bool
    )


def with_conda(env: Mapping[str, str], path: str) -> tuple[bool, str | None]:
    """Whether the image at *path* could be read, and the ``$WITH_CONDA`` it defines."""
    found = facts(env, path)
    return (False, None) if found is None else (True, found["with_conda"])
