"""The default backend: Slurm's own commands (sbatch --parsable, salloc, srun)."""

from __future__ import annotations

from .. import proc
from .base import Submission, parse_parsable


class SbatchBackend:
    name = "sbatch"

    def submit(self, script: str, *, cwd: str) -> Submission:
        # The script goes in on stdin: sbatch reads its #SBATCH lines from there.
        result = proc.run(["sbatch", "--parsable"], input=script, cwd=cwd)
        return parse_parsable(result.stdout)

    def run_interactive(self, options: list[str], step: str, *, cwd: str) -> int:
        # salloc runs the step on this node inside the allocation; the step's
        # srun launches the container on the allocated node (LUMI's pattern).
        return proc.run_foreground(["salloc", *options, "bash", "-c", step, "slurmc-step"], cwd=cwd)
