"""Where a job's image is looked up, and what it resolved to."""

from __future__ import annotations

import os
from collections.abc import Mapping

from slurmc.core.sites import Site, expand
from slurmc.errors import ConfigError, ImageNotFoundError
from slurmc.grammar.refs import ImageRef, ImageSpec
from slurmc.values import Value


class Roots(Value):
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


class ResolvedImage(Value):
    spec: ImageSpec
    path: str  # an absolute path, or a URI the runtime resolves itself
    source: str  # "path" | "catalog" | "cache" | "missing" | "uri"
    ref: ImageRef | None = None
    root: str | None = None  # for "cache"/"missing": the cache root


def site_roots(
    site: Site,
    env: Mapping[str, str],
    cache_dirs: tuple[str, ...] = (),
    catalogs: tuple[str, ...] = (),
) -> Roots:
    """The cache roots and catalogs for one invocation.

    ``--cache-dir``/``$SLURMC_CACHE_DIR`` and ``--catalog``/``$SLURMC_CATALOG`` replace
    the site's for that invocation. A site cache whose path needs an unset variable
    (LUMI's ``$PROJECT_ID``) is left out with the reason kept, so that catalogs and
    local files still work without it.
    """
    problems: list[str] = []

    def expand_all(dirs: tuple[str, ...], key: str) -> list[str]:
        out = []
        for d in dirs:
            try:
                out.append(expand(d, env, f"{site.source}: {key}"))
            except ConfigError as exc:
                problems.append(str(exc))
        return out

    caches = list(cache_dirs) or [d for d in env.get("SLURMC_CACHE_DIR", "").split(os.pathsep) if d]
    if not caches:
        caches = expand_all(site.cache, "images.cache")
    cats = list(catalogs) or [d for d in env.get("SLURMC_CATALOG", "").split(os.pathsep) if d]
    if not cats:
        cats = expand_all(site.catalogs, "images.catalogs")
    return Roots(tuple(dict.fromkeys(caches)), tuple(dict.fromkeys(cats)), tuple(problems))
