"""Container runtimes, one module each; :func:`get_runtime` imports only the one asked for.

A module here is a runtime when it defines ``RUNTIMES``, a tuple of
:class:`~slurmc.runtimes.base.Runtime` objects (one per flavour: the Apptainer module
also defines SingularityCE's); the site file's ``runtime.kind`` names one of them.
"""

from __future__ import annotations

import importlib

from slurmc.runtimes.base import Runtime

#: the runtime of a Site built without a site file (tests, tools): the one both guides use
DEFAULT_RUNTIME = "apptainer"
#: flavours defined in another runtime's module
_FLAVOURS = {"singularity": "apptainer"}


def available() -> list[str]:
    """Every runtime kind a site file may name."""
    import pkgutil  # only here: a run imports its one runtime by name

    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"]
    return sorted({*names, *_FLAVOURS})


def get_runtime(kind: str) -> Runtime:
    """The runtime a site's ``runtime.kind`` names (KeyError: no such runtime)."""
    if kind == "base" or not kind.isidentifier():
        raise KeyError(kind)
    module = _FLAVOURS.get(kind, kind)
    try:
        found = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{module}":
            raise
        raise KeyError(kind) from None
    for runtime in getattr(found, "RUNTIMES", ()):
        if runtime.name == kind:
            return runtime
    raise KeyError(kind)


__all__ = ["DEFAULT_RUNTIME", "Runtime", "available", "get_runtime"]
