"""Slurm backends: sbatch (default, everywhere) and pyslurm (where it imports)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Backend, Submission, parse_parsable

BACKENDS = ("sbatch", "pyslurm")


def get_backend(name: str) -> Backend:
    if name == "sbatch":
        from .sbatch import SbatchBackend

        return SbatchBackend()
    if name == "pyslurm":
        try:
            import pyslurm
        except Exception as exc:  # ImportError, or a build against another Slurm
            raise ConfigError(
                f"backend pyslurm was asked for, but `import pyslurm` fails ({exc}); "
                "pyslurm must match this cluster's Slurm release; use the sbatch backend"
            ) from None
        from .pyslurm import PyslurmBackend

        return PyslurmBackend(pyslurm)
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Submission", "get_backend", "parse_parsable"]
