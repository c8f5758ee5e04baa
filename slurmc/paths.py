"""Where slurmc keeps things: the XDG base directories and the data shipped with it.

One place for the rules (the XDG Base Directory specification): ``$XDG_CONFIG_HOME``
(site files, templates, credentials), ``$XDG_STATE_HOME`` (job records, digests),
``$XDG_CACHE_HOME`` (image facts, compiled templates), ``$XDG_DATA_HOME`` (venvs),
each falling back to its default under ``$HOME``, with ``slurmc`` appended.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_DEFAULTS = {
    "XDG_CONFIG_HOME": (".config",),
    "XDG_STATE_HOME": (".local", "state"),
    "XDG_CACHE_HOME": (".cache",),
    "XDG_DATA_HOME": (".local", "share"),
}


def _home(env: Mapping[str, str], variable: str) -> Path:
    base = env.get(variable) or os.path.join(env.get("HOME") or "~", *_DEFAULTS[variable])
    return Path(os.path.expanduser(base)) / "slurmc"


def config_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/slurmc`` (``~/.config/slurmc``)."""
    return _home(env, "XDG_CONFIG_HOME")


def state_home(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/slurmc`` (``~/.local/state/slurmc``)."""
    return _home(env, "XDG_STATE_HOME")


def cache_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/slurmc`` (``~/.cache/slurmc``)."""
    return _home(env, "XDG_CACHE_HOME")


def data_home(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/slurmc`` (``~/.local/share/slurmc``)."""
    return _home(env, "XDG_DATA_HOME")


def bundled_dir(name: str) -> Path:
    """A data directory shipped with slurmc (``templates``, ``site-configs``): inside the
    wheel (``slurmc/_data/NAME``), or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / name
    return packaged if packaged.is_dir() else here.parent / name
