"""What ``slurmc cache`` does: list, add, remove, prune and verify cached images."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from slurmc.cache.formats import check_image, detect_format
from slurmc.cache.layout import Entry, lookup, open_dir, scan
from slurmc.cache.lock import HOST, ImageLock, pid_alive, read_owner
from slurmc.cache.provenance import remove_meta
from slurmc.cache.pull import PullOptions, pull_into
from slurmc.cache.workdir import clean_leftovers
from slurmc.errors import CacheError, InvalidReferenceError
from slurmc.grammar.refs import ImageRef, parse_reference
from slurmc.runtimes import Runtime
from slurmc.runtimes.base import UserCopy

_SIZE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _SIZE else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        raise CacheError(f"--max-size: {text!r} is not a size such as 500G or 2T") from None
    return int(value * _SIZE[unit])


def entries(roots: Iterable[str], runtime: Runtime) -> list[Entry]:
    out: list[Entry] = []
    for root in roots:
        out.extend(scan(root, runtime))
    return sorted(out, key=lambda e: (e.root, e.relpath))


def add(
    file: str,
    ref_text: str,
    runtime: Runtime,
    root: str,
    env: Mapping[str, str],
    *,
    force: bool = False,
) -> str:
    """Copy a local image into the cache under *ref*'s name, with the cache's permissions."""
    ref = parse_reference(ref_text)
    if not os.path.isfile(file):
        raise CacheError(f"{file}: no such file to add")
    fmt = detect_format(file)
    if fmt != runtime.format:
        raise CacheError(
            f"{file} is {fmt or 'not an image'}, but this site's runtime ({runtime.name}) "
            f"caches {runtime.format} files"
        )
    check_image(file, fmt)
    final = os.path.join(root, runtime.cache_relpath(ref))
    if os.path.exists(final) and not force:
        raise CacheError(f"{ref} is already cached at {final}; pass --force to replace it")

    def copy(tmp: str) -> None:
        shutil.copyfile(file, tmp)

    return pull_into(ref, runtime, root, PullOptions(executable=""), env, write=copy)


def refresh_image(
    ref: ImageRef,
    runtime: Runtime,
    roots: Any,
    options: PullOptions,
    env: Mapping[str, str],
    *,
    notify: Callable[[str], None],
) -> str:
    """``--refresh``: ask the registry what the tag points at now (one manifest request)
    and pull again, replacing the cached file atomically, only if that moved from the
    digest recorded at the last pull (or none was recorded)."""
    from dataclasses import replace

    from slurmc.cache.provenance import read_meta
    from slurmc.cache.pull import current_digest, login_for

    rel = runtime.cache_relpath(ref)
    root = roots.writable()
    path = lookup(root, rel)
    login = login_for(ref, options, env)  # looked up once, for the question and the pull
    if path is not None:
        now = current_digest(ref, login, env)
        if read_meta(path).get("digest") == now:
            notify(f"{ref} is up to date ({now})")
            return path
        notify(f"{ref} moved to {now}: pulling it again")
    again = replace(options, replace=True, login=login)
    return pull_into(ref, runtime, root, again, env, notify=notify)


def make_user_copy(copy: UserCopy, env: Mapping[str, str]) -> bool:
    """The runtime's per-user container from a shared cached file (``enroot create``, as
    manage-enroot-cache does); whether it was made now (False: it existed)."""
    from slurmc import proc

    if copy.name in proc.run(copy.list_argv, env=env).stdout.split():
        return False
    proc.run(copy.create_argv, env=env)
    return True


def remove(ref_text: str, runtime: Runtime, roots: Iterable[str]) -> list[str]:
    ref = parse_reference(ref_text)
    removed = []
    relpath = runtime.cache_relpath(ref)
    *parts, name = relpath.split("/")
    for root in roots:
        path = os.path.join(root, relpath)
        if lookup(root, relpath) is None:
            continue
        try:
            dir_fd = open_dir(root, parts)
        except (OSError, CacheError):
            continue
        try:
            lock_path = os.path.join(os.path.dirname(path), f".{name}.lock")
            with ImageLock(lock_path, timeout=60, dir_fd=dir_fd):
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except OSError as exc:
                    raise CacheError(f"cannot remove {path}: {_why(exc)}") from None
                remove_meta(dir_fd, name)
        finally:
            os.close(dir_fd)
        removed.append(path)
    if not removed:
        raise CacheError(f"{ref} is not in the cache; `slurmc cache ls` shows what is")
    return removed


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return (
            f"{exc.strerror} (another user's image in a sticky or read-only directory: "
            "only its owner or the cache's owner can remove it)"
        )
    return exc.strerror or str(exc)


def unlink_entry(entry: Entry) -> str | None:
    """Remove a listed image without following links; the reason on failure, else None."""
    *parts, name = entry.relpath.split("/")
    try:
        dir_fd = open_dir(entry.root, parts)
    except CacheError as exc:
        return str(exc)
    except OSError as exc:
        return _why(exc)
    try:
        os.unlink(name, dir_fd=dir_fd)
        remove_meta(dir_fd, name)
    except FileNotFoundError:
        return None  # gone meanwhile: what was asked
    except OSError as exc:
        return _why(exc)
    finally:
        os.close(dir_fd)
    return None


@dataclass(frozen=True)
class PrunePlan:
    remove: list[Entry]
    keep_bytes: int
    leftovers: list[str]


def plan_prune(
    all_entries: list[Entry],
    *,
    max_size: int | None,
    older_than_days: float | None,
    now: float | None = None,
) -> PrunePlan:
    """Least recently used first: drop what is older than N days, then down to the budget."""
    now = time.time() if now is None else now
    by_use = sorted(all_entries, key=lambda e: max(e.atime, e.mtime))
    doomed: list[Entry] = []
    if older_than_days is not None:
        cutoff = now - older_than_days * 86400
        doomed = [e for e in by_use if max(e.atime, e.mtime) < cutoff]
    kept = [e for e in by_use if e not in doomed]
    total = sum(e.size for e in kept)
    if max_size is not None:
        for e in list(kept):
            if total <= max_size:
                break
            doomed.append(e)
            kept.remove(e)
            total -= e.size
    return PrunePlan(doomed, total, [])


def stale_leftovers(roots: Iterable[str]) -> list[str]:
    """Temp files of killed pulls (and of their provenance files) and locks of dead
    holders (this host), anywhere in the roots."""
    from slurmc.cache.provenance import TEMP

    found = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                path = os.path.join(dirpath, f)
                pull_dir = ".pulling." in f and f.startswith(".")
                meta = TEMP.match(f)  # a provenance file being written when its pull died
                if pull_dir or (meta and meta["host"] == HOST and not pid_alive(int(meta["pid"]))):
                    found.append(path)
                elif f.startswith(".") and f.endswith(".lock"):
                    owner = read_owner(path)
                    if owner and owner.host == HOST and owner.pid > 0 and not pid_alive(owner.pid):
                        found.append(path)
    return found


def clean(paths: Iterable[str]) -> list[str]:
    done = []
    for path in paths:
        if ".pulling." in path:
            directory, f = os.path.split(path)
            name = f[1:].split(".pulling.", 1)[0]
            done += clean_leftovers(directory, name, max_age=86400.0)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
                done.append(path)
    return done


def verify(all_entries: list[Entry], runtime: Runtime) -> list[tuple[Entry, str]]:
    bad = []
    for e in all_entries:
        try:
            check_image(e.path, runtime.format)
        except CacheError as exc:
            bad.append((e, str(exc)))
    return bad


def default_refs(site_defaults: Mapping[str, str], kind: str) -> ImageRef:
    if kind not in site_defaults:
        have = ", ".join(site_defaults) or "none"
        raise CacheError(f"this site has no default {kind} image (it has: {have})")
    try:
        return parse_reference(site_defaults[kind])
    except InvalidReferenceError as exc:
        raise CacheError(f"the site's default {kind} image is invalid: {exc}") from None
