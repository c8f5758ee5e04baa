"""The Slurm backend contract: submit a script, run a step in the foreground."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from ..errors import SubmissionError

_PARSABLE = re.compile(r"(\d+)(?:;(\S+))?\Z")


@dataclass(frozen=True)
class Submission:
    job_id: str
    cluster: str | None = None


class Backend(Protocol):
    name: str

    def submit(self, script: str, *, cwd: str) -> Submission:
        """Submit a batch script; return the job id (and cluster, when known)."""
        ...

    def run_interactive(self, options: list[str], step: str, *, cwd: str) -> int:
        """Allocate with *options*, run the *step* script in the foreground, return its status."""
        ...


def parse_parsable(stdout: str) -> Submission:
    """Parse ``sbatch --parsable`` output: ``ID`` or ``ID;CLUSTER``, after any banner lines."""
    for line in reversed(stdout.splitlines()):
        m = _PARSABLE.match(line.strip())
        if m:
            return Submission(m.group(1), m.group(2))
    shown = " | ".join(ln.strip() for ln in stdout.splitlines() if ln.strip())[:200]
    raise SubmissionError(
        f"sbatch printed no job id (got {shown!r}); check `squeue --me` before submitting again"
    )
