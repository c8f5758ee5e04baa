"""Slurm backends: sbatch (default, everywhere) and pyslurm (where it imports)."""

from __future__ import annotations

from slurmc.backends.base import Backend, Submission, parse_parsable
from slurmc.errors import ConfigError

BACKENDS = ("sbatch", "pyslurm")


def get_backend(name: str) -> Backend:
    if name == "sbatch":
        from slurmc.backends.sbatch import SbatchBackend

        return SbatchBackend()
    if name == "pyslurm":
        try:
            import pyslurm
        except Exception as exc:  # ImportError, or a build against another Slurm
            raise ConfigError(
                f"backend pyslurm was asked for, but `import pyslurm` fails ({exc}); "
                "pyslurm must match this cluster's Slurm release; use the sbatch backend"
            ) from None
        from slurmc.backends.pyslurm import PyslurmBackend

        return PyslurmBackend(pyslurm)
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Submission", "get_backend", "parse_parsable"]
