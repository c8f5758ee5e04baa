"""Resolve what the user typed to an image file the runtime can open.

Order: an explicit local path -> the read-only catalogs -> the writable cache
roots -> (the caller pulls). A reference found nowhere resolves to
``source="missing"`` with the path it will have in the first writable root.
Each root costs one ``stat``, whatever the size of the cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ImageNotFoundError
from .refs import ImageRef, ImageSpec
from .runtimes import Runtime


@dataclass(frozen=True)
class Roots:
    """Where images are looked up: writable caches (first = pull target), read-only catalogs."""

    caches: tuple[str, ...] = ()
    catalogs: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # site roots left out, and why

    def writable(self) -> str:
        """The root a pull writes to."""
        if not self.caches:
            why = f" ({self.problems[0]})" if self.problems else ""
            raise ImageNotFoundError(f"no image cache to pull into{why}; pass --cache-dir DIR")
        return self.caches[0]


@dataclass(frozen=True)
class ResolvedImage:
    spec: ImageSpec
    path: str  # an absolute path, or a URI the runtime resolves itself
    source: str  # "path" | "catalog" | "cache" | "missing" | "uri"
    ref: ImageRef | None = None
    root: str | None = None  # for "cache"/"missing": the cache root


def resolve_image(
    spec: ImageSpec,
    runtime: Runtime,
    roots: Roots,
    *,
    cwd: str,
    env: Mapping[str, str],
) -> ResolvedImage:
    if spec.kind == "uri":
        if runtime.name not in ("apptainer", "singularity"):
            raise ImageNotFoundError(
                f"{spec.text}: {spec.transport} images need apptainer/singularity, "
                f"but this site uses {runtime.name}"
            )
        return ResolvedImage(spec, spec.text, "uri")
    if spec.kind == "path":
        assert spec.path is not None
        path = spec.path
        if path.startswith("~/") and env.get("HOME"):
            path = env["HOME"] + path[1:]
        path = os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))
        if not os.path.exists(path):
            raise ImageNotFoundError(f"image file {path} does not exist; check the path")
        return ResolvedImage(spec, path, "path")
    if spec.kind == "catalog":
        from .cache.catalog import pick

        assert spec.catalog is not None
        package, version = spec.catalog
        return ResolvedImage(spec, pick(roots.catalogs, package, version).path, "catalog")
    assert spec.ref is not None
    from .cache.layout import lookup

    rel = runtime.cache_relpath(spec.ref)
    for kind, dirs in (("catalog", roots.catalogs), ("cache", roots.caches)):
        for root in dirs:
            candidate = lookup(root, rel)  # never through a link planted in a shared cache
            if candidate:
                return ResolvedImage(spec, candidate, kind, spec.ref, root)
    if not roots.caches:
        looked = _where(roots.catalogs, rel)
        why = f" ({roots.problems[0]})" if roots.problems else ""
        raise ImageNotFoundError(
            f"image {spec.ref} is not in {looked} and there is no cache to pull into{why}; "
            "give a local image file or --cache-dir DIR"
        )
    target = os.path.join(roots.writable(), rel)
    return ResolvedImage(spec, target, "missing", spec.ref, roots.caches[0])


def _where(dirs: Sequence[str], rel: str) -> str:
    return ", ".join(os.path.join(d, rel) for d in dirs) or "any catalog"
