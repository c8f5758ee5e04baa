"""Resolve what the user typed to an image file the runtime can open.

Order: an explicit local path -> the read-only catalogs -> the writable cache
roots -> (the caller pulls). A reference found nowhere resolves to
``source="missing"`` with the path it will have in the first writable root.
Each root costs one ``stat``, whatever the size of the cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from slurmc.core.job import Job
from slurmc.core.roots import ResolvedImage, Roots
from slurmc.errors import ImageNotFoundError
from slurmc.grammar.refs import ImageSpec
from slurmc.runtimes import Runtime, available, get_runtime
from slurmc.values import replace


def resolve_image(
    spec: ImageSpec,
    runtime: Runtime,
    roots: Roots,
    *,
    cwd: str,
    env: Mapping[str, str],
) -> ResolvedImage:
    if spec.kind == "uri":
        if not runtime.accepts_uris:
            takers = "/".join(k for k in available() if get_runtime(k).accepts_uris)
            raise ImageNotFoundError(
                f"{spec.text}: {spec.transport} images need {takers}, "
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
        from slurmc.cache.catalog import pick

        assert spec.catalog is not None
        package, version = spec.catalog
        return ResolvedImage(spec, pick(roots.catalogs, package, version).path, "catalog")
    assert spec.ref is not None
    from slurmc.cache.layout import lookup

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


def resolve_job(job: Job, *, cwd: str, env: Mapping[str, str]) -> Job:
    """The planned job with its image resolved (a file, or where a pull will put it)."""
    image = resolve_image(job.image.spec, job.runtime, job.roots, cwd=cwd, env=env)
    return replace(job, image=image)


def _where(dirs: Sequence[str], rel: str) -> str:
    return ", ".join(os.path.join(d, rel) for d in dirs) or "any catalog"
