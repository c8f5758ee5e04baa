"""Resolve what the user typed to an image file the runtime can open.

Order: an explicit local path, then each cache root in turn (Determined's
``ROOT/<namespace>/<repo>:<tag>`` layout, per-runtime suffix). Resolution costs
one ``stat`` per root, whatever the size of the cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ImageNotFoundError
from .refs import ImageRef, ImageSpec
from .runtimes import Runtime


@dataclass(frozen=True)
class ResolvedImage:
    spec: ImageSpec
    path: str  # an absolute path, or a URI the runtime resolves itself
    source: str  # "path" | "cache" | "uri"
    ref: ImageRef | None = None


def resolve_image(
    spec: ImageSpec,
    runtime: Runtime,
    cache_roots: Sequence[str],
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
        if path.startswith("~"):
            path = env.get("HOME", "~") + path[1:] if path.startswith("~/") else path
            path = os.path.expanduser(path)
        path = os.path.normpath(os.path.join(cwd, path))
        if not os.path.exists(path):
            raise ImageNotFoundError(f"image file {path} does not exist; check the path")
        return ResolvedImage(spec, path, "path")
    assert spec.ref is not None
    rel = runtime.cache_relpath(spec.ref)
    for root in cache_roots:
        candidate = os.path.join(root, rel)
        if os.path.isfile(candidate):
            return ResolvedImage(spec, candidate, "cache", spec.ref)
    where = ", ".join(os.path.join(r, rel) for r in cache_roots) or "(this site has no cache)"
    raise ImageNotFoundError(
        f"image {spec.ref} is not in the cache (looked for {where}); "
        f"give a local image file instead, or place the image at that path"
    )
