"""Shell completion of slurmc's own values: sites, partitions, cached images, venvs, jobs.

Enabled with one line in ``~/.bashrc`` (``source_zsh`` in ``~/.zshrc``)::

    eval "$(_SLURMC_COMPLETE=source_bash slurmc)"

The shell then runs slurmc with ``_SLURMC_COMPLETE`` set and the words typed so far;
Click calls these functions. Each returns the candidates that start with what was
typed, and never raises: a completion that fails offers nothing rather than printing
a traceback into the user's command line.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click

Completer = Callable[[click.Context, str], list[str]]

#: image files offered next to cached references
_IMAGE_SUFFIXES = (".sif", ".sqsh", ".sqfs", ".squashfs", ".tar")


def _quiet(func: Completer) -> Completer:
    @functools.wraps(func)
    def wrapper(ctx: click.Context, incomplete: str) -> list[str]:
        try:
            return sorted(c for c in func(ctx, incomplete) if c.startswith(incomplete))
        except Exception:  # completion must never break the user's shell line
            return []

    return wrapper


def _env() -> dict[str, str]:
    return dict(os.environ)


def _site_of(ctx: click.Context) -> Any:
    from slurmc.core.sites import resolve_site

    chosen = ctx.params.get("site")
    if not chosen and ctx.parent is not None:
        chosen = ctx.parent.params.get("site")
    return resolve_site(chosen, _env())


@_quiet
def sites(ctx: click.Context, incomplete: str) -> list[str]:
    from slurmc.core.sites import site_files

    return list(site_files(_env()))


@_quiet
def partitions(ctx: click.Context, incomplete: str) -> list[str]:
    """The partitions of the site chosen so far on the line (else the resolved site)."""
    return list(_site_of(ctx).partitions)


@_quiet
def images(ctx: click.Context, incomplete: str) -> list[str]:
    """Cached references of the site's caches, and image files and directories."""
    from slurmc.cache.manage import entries
    from slurmc.core.roots import site_roots
    from slurmc.runtimes import get_runtime

    out: list[str] = []
    if not incomplete.startswith(("/", ".", "~")):
        site = _site_of(ctx)
        cache_dirs = tuple(ctx.params.get("cache_dir") or ())
        roots = site_roots(site, _env(), cache_dirs)
        out += [str(e.ref) for e in entries(roots.caches, get_runtime(site.runtime))]
    import glob  # only when completing a file name (every command imports this module)

    for path in glob.glob(os.path.expanduser(incomplete) + "*"):
        if os.path.isdir(path):
            out.append(path + "/")
        elif path.endswith(_IMAGE_SUFFIXES):
            out.append(path)
    if incomplete.startswith("~"):
        home = os.path.expanduser("~")
        out = [("~" + p[len(home) :]) if p.startswith(home) else p for p in out]
    return out


@_quiet
def venvs(ctx: click.Context, incomplete: str) -> list[str]:
    from slurmc.usecases.venvs import list_venvs

    return [v.name for v in list_venvs(_env())]


@_quiet
def job_ids(ctx: click.Context, incomplete: str) -> list[str]:
    """Ids of the recorded jobs (file names only: no record is parsed)."""
    from slurmc.usecases.records import jobs_dir

    try:
        names = os.listdir(jobs_dir(_env()))
    except FileNotFoundError:
        return []
    return sorted({n.split(".", 1)[0] for n in names if n.endswith(".json") and n[0].isdigit()})
