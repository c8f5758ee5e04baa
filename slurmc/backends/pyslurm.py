"""Optional backend through pyslurm's submission API (pyslurm >= 23).

Used only when asked for (``backend = "pyslurm"`` or ``SLURMC_BACKEND=pyslurm``)
and only where ``import pyslurm`` works: PyPI's pyslurm builds against exactly
the Slurm release it names. Interactive steps still go through salloc.
"""

from __future__ import annotations

from typing import Any

from slurmc.backends import salloc
from slurmc.backends.base import Submission
from slurmc.errors import SubmissionError


class PyslurmBackend:
    name = "pyslurm"

    def __init__(self, module: Any) -> None:
        self._pyslurm = module

    def submit(self, script: str, *, cwd: str) -> Submission:
        desc = self._pyslurm.JobSubmitDescription(script=script, working_directory=cwd)
        desc.load_sbatch_options()  # read the #SBATCH lines, as sbatch does
        try:
            job_id = desc.submit()
        except self._pyslurm.RPCError as exc:
            raise SubmissionError(f"pyslurm could not submit the job: {exc}") from None
        return Submission(str(job_id))

    def run_interactive(self, options: list[str], step: str, *, cwd: str) -> int:
        return salloc.run_interactive(options, step, cwd=cwd)
