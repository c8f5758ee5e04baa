"""Container runtimes, one module each; :func:`get_runtime` imports only the one asked for."""

from __future__ import annotations

import importlib

from .base import Runtime

_MODULES = {
    "apptainer": ("apptainer", "Apptainer"),
    "singularity": ("apptainer", "Apptainer"),
    "charliecloud": ("charliecloud", "Charliecloud"),
    "enroot": ("enroot", "Enroot"),
    "podman": ("podman", "Podman"),
}


def get_runtime(kind: str) -> Runtime:
    module, cls = _MODULES[kind]
    runtime: Runtime = getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
    if kind == "singularity":
        from dataclasses import replace

        runtime = replace(runtime, name="singularity")
    return runtime


__all__ = ["Runtime", "get_runtime"]
