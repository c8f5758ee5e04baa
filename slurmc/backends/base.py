"""The Slurm backend contract: submit a script, run a step in the foreground, ask about jobs.

Two adapters meet here:

- :class:`Backend` submits (one attempt, no retry) and runs interactive steps;
- :class:`JobQueries` asks Slurm about jobs: one batched call for many jobs, the
  tag look-up that makes a resubmission safe, and scancel.

:func:`submit_safely` is the retry policy around a backend's single attempt. It is
pure (Slurm is reached only through the callables it is given), so every branch is
unit-tested without a cluster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from slurmc.errors import ExternalCommandError, SlurmcError, SubmissionError
from slurmc.values import Value

_PARSABLE = re.compile(r"(\d+)(?:;(\S+))?\Z")

#: Job states after which a job never runs again (squeue/scontrol/sacct long names).
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)


class Submission(Value):
    job_id: str
    cluster: str | None = None
    attempts: int = 1  # sbatch calls made
    recovered: bool = False  # the id came from the tag look-up, not from sbatch's answer


class JobStatus(Value):
    """What Slurm says about one job. ``exit_code``/``signal`` are None until known."""

    job_id: str
    state: str  # a long state name (RUNNING, FAILED, ...) or "UNKNOWN"
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    source: str = ""  # "squeue" | "sacct" | "record"

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class Backend(Protocol):
    name: str

    def submit(self, script: str, *, cwd: str) -> Submission:
        """Submit a batch script once; return the job id (and cluster, when known)."""
        ...

    def run_interactive(self, options: list[str], step: str, *, cwd: str) -> int:
        """Allocate with *options*, run the *step* script in the foreground, return its status."""
        ...


class JobQueries(Protocol):
    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The jobs the controller still knows (one call); missing ids are left out."""
        ...

    def accounting(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Finished jobs from accounting (one call); raises when accounting is off."""
        ...

    def find_tagged(self, tag: str) -> list[str]:
        """Ids of this user's jobs whose comment carries *tag*, lowest first."""
        ...

    def cancel(self, job_ids: Sequence[str]) -> None: ...


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


# ---- tags ------------------------------------------------------------------------------

TAG_PREFIX = "slurmc:"
TAG_RE = re.compile(r"slurmc:[0-9a-f]{16}\b")


def new_tag() -> str:
    """A unique submission tag, e.g. ``slurmc:3f9c0a1b2d4e5f60``."""
    # os.urandom is what secrets.token_hex reads; importing secrets costs ~5 ms per run
    return TAG_PREFIX + os.urandom(8).hex()


def tagged_comment(user_comment: str | None, tag: str) -> str:
    """The job's ``--comment``: the user's own comment first (kept visible), then the tag."""
    return f"{user_comment} [{tag}]" if user_comment else tag


def tag_in(comment: str) -> str | None:
    m = TAG_RE.search(comment)
    return m.group(0) if m else None


# ---- safe submission --------------------------------------------------------------------

#: stderr fragments (lower case) of failures after which the job may exist anyway:
#: the request may have reached slurmctld, which then answered too late or not at all.
_MAYBE_SUBMITTED = (
    "socket timed out",
    "timed out after",  # proc.run killed sbatch at our own time-out
    "unable to contact slurm controller",
    "slurm_receive_msg",
    "zero bytes were transmitted or received",
    "communication connection failure",
    "connection reset by peer",
    "connection refused",
    "resource temporarily unavailable",
    "eagain",
    "temporarily unable to accept job",
    "slurmctld not responding",
    "not responding",
    "transport endpoint is not connected",
    "broken pipe",
)


def may_have_submitted(exc: SlurmcError) -> bool:
    """True when a failed sbatch may still have created the job (so: look before retrying).

    Errors that certainly created nothing (an invalid partition, account or time limit,
    a bad option) return False and are never retried.
    """
    if not isinstance(exc, ExternalCommandError):
        return False
    if exc.returncode < 0:  # killed: by our time-out or a signal, mid-request
        return True
    text = exc.stderr.lower()
    return any(fragment in text for fragment in _MAYBE_SUBMITTED)


def parse_delays(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    """``"10,30"`` -> ``(10.0, 30.0)``; used for ``$SLURMC_SUBMIT_RETRY_DELAYS``."""
    if text is None or not text.strip():
        return default
    try:
        delays = tuple(float(x) for x in text.split(","))
    except ValueError:
        delays = (-1.0,)
    if any(d < 0 for d in delays):
        raise SubmissionError(
            f"SLURMC_SUBMIT_RETRY_DELAYS={text!r} is invalid; expected seconds such as 10,30"
        )
    return delays


def submit_safely(
    submit_once: Callable[[], Submission],
    find_tagged: Callable[[], list[str]],
    cancel: Callable[[Sequence[str]], None],
    *,
    tag: str,
    delays: Iterable[float] = (10.0, 30.0),
    sleep: Callable[[float], None],
    notify: Callable[[str], None] = lambda _: None,
) -> Submission:
    """Submit once; after a failure that may have created the job, look the tag up first.

    Each entry of *delays* is one slow, bounded round: wait, then ask Slurm for a job
    carrying *tag*. Found: that is the job (never a second one). Slurm answered and
    no job has the tag: submit again. Slurm did not answer: the next round looks again,
    without submitting. Errors that certainly created no job are raised at once. After
    a resubmission the tag is looked up once more: should the first request have been
    accepted after all (a controller that answered late), the later duplicates are
    cancelled and the first job is the one reported, so exactly one job is left.
    """
    attempts = 1
    resubmitted = False
    try:
        first = submit_once()
    except SubmissionError:
        # sbatch succeeded but its answer had no id: the job exists; find it by its tag.
        found = _look(find_tagged)
        if found:
            return Submission(found[0], attempts=1, recovered=True)
        raise
    except SlurmcError as exc:
        if not may_have_submitted(exc):
            raise
        last: SlurmcError = exc
    else:
        return first

    pending = list(delays)
    why = f"{_short(last)}; the job may exist anyway"
    while True:
        if not pending:
            raise SubmissionError(
                f"{_short(last)}; after {attempts} attempt(s) slurmc cannot tell whether the "
                f"job was created; before submitting again, look for its tag: "
                f"squeue --me -t all -O JobID:10,Comment:0 | grep {tag}"
            )
        delay = pending.pop(0)
        notify(f"slurmc: {why}: looking for tag {tag} in {delay:g} s, before any retry")
        try:
            sleep(delay)
            found = _look(find_tagged)
        except KeyboardInterrupt:
            raise SubmissionError(
                f"interrupted while checking whether the job was created; before submitting "
                f"again, look for its tag: squeue --me -t all -O JobID:10,Comment:0 | grep {tag}"
            ) from None
        if found is None:
            why = "Slurm did not answer the look-up"
            continue
        if found:
            kept = _keep_first(found, cancel, notify)
            notify(f"slurmc: job {kept} carries tag {tag}: it was submitted; not submitting again")
            return Submission(kept, attempts=attempts, recovered=True)
        # Slurm answered and no job carries the tag: submitting again is safe.
        attempts += 1
        notify(f"slurmc: no job carries tag {tag}: submitting again (attempt {attempts})")
        try:
            sub = submit_once()
        except SlurmcError as exc:
            if not may_have_submitted(exc):
                raise
            last = exc
            why = f"{_short(last)}; the job may exist anyway"
            continue
        resubmitted = True
        break

    assert resubmitted
    found = _look(find_tagged)
    if found and len(found) > 1:
        kept = _keep_first(found, cancel, notify)
        return Submission(kept, sub.cluster, attempts=attempts, recovered=kept != sub.job_id)
    return Submission(sub.job_id, sub.cluster, attempts=attempts)


def _look(find_tagged: Callable[[], list[str]]) -> list[str] | None:
    """The tagged job ids, or None when Slurm could not be asked."""
    try:
        return find_tagged()
    except SlurmcError:
        return None


def _keep_first(
    found: list[str], cancel: Callable[[Sequence[str]], None], notify: Callable[[str], None]
) -> str:
    ids = sorted(set(found), key=int)
    if len(ids) > 1:
        extra = ids[1:]
        notify(
            f"slurmc: the submission reached Slurm more than once (jobs {', '.join(ids)}): "
            f"keeping {ids[0]}, cancelling {', '.join(extra)}"
        )
        try:
            cancel(extra)
        except SlurmcError as exc:
            notify(f"slurmc: could not cancel the duplicate(s) {', '.join(extra)}: {exc}")
    return ids[0]


def _short(exc: SlurmcError) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."
