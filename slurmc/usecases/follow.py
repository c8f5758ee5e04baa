"""Following jobs: when to ask Slurm, what its answer means, and tailing the output file.

Pure logic plus small I/O (reading the output file). Slurm is reached only through a
:class:`~slurmc.backends.base.JobQueries` adapter, and time only through the ``clock``
and ``sleep`` callables, so the whole loop runs in unit tests against a fake cluster.

What cluster admins ask of tools, and how it is kept:

- one batched query per interval for *all* the jobs being followed: one squeue call
  (``-t all`` covers recently finished jobs too, with their exit status); sacct only
  for the jobs the controller has forgotten, once, and never again in this process
  once it has failed (sites where accounting is off);
- the interval backs off: 1, 2, 4, 8, 16, then the ceiling (30 s by default, the
  floor admins ask for). A change of state (PENDING -> RUNNING) starts the schedule
  again, so a job's end is noticed soon after a short run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from slurmc.backends.base import FINAL_STATES, JobQueries, JobStatus
from slurmc.errors import SlurmcError, ValidationError

#: The default (and recommended minimum) ceiling of the polling interval, in seconds.
POLL_CEILING = 30.0
#: How often the output file is read while following (a local read, not a Slurm call).
TAIL_EVERY = 0.5


def backoff(
    n: int, *, first: float = 1.0, factor: float = 2.0, ceiling: float = POLL_CEILING
) -> float:
    """The wait after the *n*-th poll (n = 0, 1, ...): first * factor**n, at most *ceiling*."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if n > 64:  # factor**n overflows long before; the ceiling has been reached anyway
        return ceiling
    return min(first * factor**n, ceiling)


def poll_ceiling(env: Mapping[str, str]) -> float:
    """``$SLURMC_POLL_MAX`` (seconds) or 30. Lower it only for tests on a private cluster."""
    text = env.get("SLURMC_POLL_MAX")
    if not text:
        return POLL_CEILING
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValidationError(f"SLURMC_POLL_MAX={text!r} is invalid; expected seconds such as 30")
    return value


# ---- what a final state means -------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    exit_code: int  # what `slurmc run --wait` exits with
    message: str  # one line for the user
    ok: bool


#: Exit codes for ends that carry no exit status of their own.
_STATE_CODES = {
    "TIMEOUT": 124,  # as timeout(1)
    "DEADLINE": 124,
    "CANCELLED": 143,  # 128 + SIGTERM, what scancel sends
    "PREEMPTED": 143,
    "REVOKED": 143,
    "OUT_OF_MEMORY": 137,  # 128 + SIGKILL, the OOM killer's signal
    "NODE_FAIL": 75,  # EX_TEMPFAIL: not the job's fault, resubmitting may work
    "BOOT_FAIL": 75,
}


def outcome(status: JobStatus) -> Outcome:
    """The exit code and message for a job that has ended (or vanished)."""
    job = f"job {status.job_id}"
    code, sig = status.exit_code, status.signal
    own = 128 + sig if sig else code  # the job's own status, shell-style
    state = status.state
    if state == "COMPLETED":
        return Outcome(own or 0, f"{job} completed (exit code {own or 0})", not own)
    if state == "FAILED" or state == "SPECIAL_EXIT":
        if sig:
            return Outcome(
                own or 1, f"{job} failed: killed by signal {sig} (exit code {own})", False
            )
        return Outcome(own or 1, f"{job} failed with exit code {own if own else 'unknown'}", False)
    if state == "CANCELLED":
        return Outcome(_STATE_CODES[state], f"{job} was cancelled", False)
    if state in ("TIMEOUT", "DEADLINE"):
        what = "its time limit" if state == "TIMEOUT" else "its deadline"
        return Outcome(_STATE_CODES[state], f"{job} was stopped at {what} ({state})", False)
    if state == "OUT_OF_MEMORY":
        return Outcome(
            137, f"{job} ran out of memory (OUT_OF_MEMORY); ask for more with --mem", False
        )
    if state in ("NODE_FAIL", "BOOT_FAIL"):
        return Outcome(
            75,
            f"{job} ended with {state}: a node failed, not the job; submitting again may work",
            False,
        )
    if state in ("PREEMPTED", "REVOKED"):
        return Outcome(_STATE_CODES[state], f"{job} was {state.lower()} by the scheduler", False)
    if state in FINAL_STATES:  # pragma: no cover - every final state is named above
        return Outcome(own or 1, f"{job} ended with {state}", False)
    return Outcome(
        1,
        f"{job} is no longer known to the controller and accounting (sacct) did not know it "
        "either; its final state is unknown",
        False,
    )


# ---- one batched query per interval --------------------------------------------------------


class Poller:
    """Asks about many jobs at once: squeue, then sacct for what the controller forgot."""

    def __init__(self, queries: JobQueries) -> None:
        self.queries = queries
        self.accounting_works = True
        self.calls = 0  # Slurm commands run, for the record and the tests

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = list(dict.fromkeys(job_ids))
        self.calls += 1
        found = dict(self.queries.status(ids))
        missing = [i for i in ids if i not in found]
        if missing and self.accounting_works:
            self.calls += 1
            try:
                found.update(self.queries.accounting(missing))
            except SlurmcError:
                self.accounting_works = False  # e.g. "Slurm accounting storage is disabled"
        for i in ids:
            if i not in found:
                found[i] = JobStatus(i, "UNKNOWN", source="none")
        return {i: found[i] for i in ids}


# ---- tailing the output file -----------------------------------------------------------------


class Tail:
    """Copies what is appended to a file to *write*, from where it last stopped.

    The file may not exist yet (a pending job); if it shrinks (rewritten), reading
    starts again from its beginning.
    """

    CHUNK = 1 << 20

    def __init__(self, path: str, write: Callable[[bytes], None], *, start: int = 0) -> None:
        self.path = path
        self.write = write
        self.offset = start
        self.seen = False  # the file has existed at some point

    def pump(self) -> int:
        try:
            # O_NONBLOCK: a FIFO (or device) put where the output should be must not block
            # the open; only a regular file is read
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return 0
            with os.fdopen(fd, "rb") as f:
                self.seen = True
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:
                    self.offset = 0
                f.seek(self.offset)
                total = 0
                while True:
                    chunk = f.read(self.CHUNK)
                    if not chunk:
                        break
                    self.write(chunk)
                    total += len(chunk)
                    self.offset += len(chunk)
                return total
        except FileNotFoundError:
            return 0
        except IsADirectoryError:
            return 0


# ---- the loop ------------------------------------------------------------------------------------


@dataclass
class FollowStats:
    polls: int = 0  # batched queries made
    calls: int = 0  # Slurm commands run (squeue + sacct)
    failures: int = 0  # queries that failed (controller not answering...)


def follow(
    job_ids: Sequence[str],
    poller: Poller,
    *,
    tails: Sequence[Tail] = (),
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    ceiling: float = POLL_CEILING,
    tail_every: float = TAIL_EVERY,
    on_change: Callable[[JobStatus], None] = lambda _: None,
    on_error: Callable[[SlurmcError], None] = lambda _: None,
    stats: FollowStats | None = None,
    drain: float = 2.0,
) -> dict[str, JobStatus]:
    """Follow *job_ids* until every one has ended; return their last statuses.

    One batched poll per interval (see :func:`backoff`), the output files copied
    in between. A poll that fails (a controller that does not answer) is reported
    through *on_error* and counts as a poll: the schedule keeps backing off.
    """
    stats = stats if stats is not None else FollowStats()
    ids = list(dict.fromkeys(job_ids))
    last: dict[str, JobStatus] = {}
    n = 0
    next_poll = clock()
    while True:
        for t in tails:
            t.pump()
        if clock() >= next_poll:
            stats.polls += 1
            before = poller.calls
            try:
                current = poller.poll([i for i in ids if i not in last or not _ended(last[i])])
            except SlurmcError as exc:
                stats.failures += 1
                on_error(exc)
                current = {}
            stats.calls += poller.calls - before
            changed = False
            for i, st in current.items():
                if i not in last or last[i].state != st.state:
                    changed = True
                    on_change(st)
                last[i] = st
            if ids and all(i in last and _ended(last[i]) for i in ids):
                _drain(tails, sleep, clock, drain)
                return {i: last[i] for i in ids}
            if changed:
                n = 0  # a new phase (started, ending): look again soon
            next_poll = clock() + backoff(n, ceiling=ceiling)
            n += 1
        wait = max(0.0, next_poll - clock())
        sleep(min(tail_every, wait) if tails else wait)


def _ended(status: JobStatus) -> bool:
    return status.final or status.state == "UNKNOWN"


def _drain(
    tails: Sequence[Tail], sleep: Callable[[float], None], clock: Callable[[], float], limit: float
) -> None:
    """Read what is left; a shared file system may show the last writes a little late."""
    if not tails:
        return
    deadline = clock() + limit
    quiet = 0
    while True:
        got = sum(t.pump() for t in tails)
        quiet = 0 if got else quiet + 1
        if quiet >= 2 or clock() >= deadline:
            return
        sleep(0.25)
