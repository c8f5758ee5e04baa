"""What every backend shares with Slurm's own commands: the interactive foreground
run under ``salloc`` (pyslurm has no API for it), and the SLURM_CONF check."""

from __future__ import annotations

import os
from collections.abc import Mapping

from slurmc import proc
from slurmc.errors import SLURM_CONFIG_FIX, ConfigError


def check_slurm_conf(env: Mapping[str, str]) -> None:
    """A SLURM_CONF that names no file: say so at once (sbatch would retry it for 60 s)."""
    conf = env.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        raise ConfigError(f"SLURM_CONF={conf}: no such file; {SLURM_CONFIG_FIX}")


def run_interactive(options: list[str], step: str, *, cwd: str) -> int:
    """Run *step* in the foreground inside a new allocation.

    salloc runs the step on this node inside the allocation; the step's srun launches
    the container on the allocated node (LUMI's pattern).
    """
    check_slurm_conf(os.environ)
    return proc.run_foreground(["salloc", *options, "bash", "-c", step, "slurmc-step"], cwd=cwd)
