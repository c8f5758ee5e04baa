"""The following loop against a fake cluster and a fake clock: what is asked, and when."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from slurmc.backends.base import JobStatus
from slurmc.errors import ExternalCommandError, ValidationError
from slurmc.usecases.follow import (
    POLL_CEILING,
    FollowStats,
    Poller,
    Tail,
    backoff,
    follow,
    outcome,
    poll_ceiling,
)

# ---- the schedule ------------------------------------------------------------------------


def test_backoff_doubles_from_one_second_up_to_the_ceiling():
    assert [backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert POLL_CEILING >= 30  # what cluster admins ask for
    assert backoff(10_000) == 30


def test_backoff_ceiling_can_be_lowered_for_tests():
    assert [backoff(n, ceiling=2) for n in range(4)] == [1, 2, 2, 2]


def test_backoff_rejects_negative():
    with pytest.raises(ValueError, match="n must be >= 0"):
        backoff(-1)
    assert backoff(0) == 1


def test_backoff_first_and_factor():
    assert [backoff(n, first=0.5, factor=3) for n in range(4)] == [0.5, 1.5, 4.5, 13.5]


def test_backoff_stops_computing_powers_after_64_polls():
    inf = float("inf")
    assert backoff(64, ceiling=inf) == 2.0**64
    assert backoff(65, ceiling=inf) == inf  # the ceiling, without computing 2**65
    assert backoff(10**9, factor=10.0) == 30  # no OverflowError


@pytest.mark.parametrize(("text", "value"), [(None, 30.0), ("", 30.0), ("2", 2.0), ("60", 60.0)])
def test_poll_ceiling_from_env(text, value):
    env = {} if text is None else {"SLURMC_POLL_MAX": text}
    assert poll_ceiling(env) == value


@pytest.mark.parametrize("text", ["0", "-3", "soon"])
def test_poll_ceiling_rejects_bad_values(text):
    with pytest.raises(ValidationError, match="SLURMC_POLL_MAX"):
        poll_ceiling({"SLURMC_POLL_MAX": text})


# ---- outcomes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "code", "sig", "exit_code", "text"),
    [
        ("COMPLETED", 0, 0, 0, "job 7 completed (exit code 0)"),
        ("FAILED", 3, 0, 3, "job 7 failed with exit code 3"),
        ("FAILED", 0, 9, 137, "killed by signal 9"),
        ("FAILED", None, None, 1, "exit code unknown"),
        ("CANCELLED", 0, 15, 143, "job 7 was cancelled"),
        ("TIMEOUT", 0, 0, 124, "stopped at its time limit (TIMEOUT)"),
        ("DEADLINE", 0, 0, 124, "its deadline"),
        ("NODE_FAIL", 0, 0, 75, "a node failed"),
        ("BOOT_FAIL", None, None, 75, "BOOT_FAIL"),
        ("OUT_OF_MEMORY", 0, 9, 137, "ran out of memory"),
        ("PREEMPTED", 0, 0, 143, "preempted"),
        ("UNKNOWN", None, None, 1, "final state is unknown"),
    ],
)
def test_outcome(state, code, sig, exit_code, text):
    result = outcome(JobStatus("7", state, code, sig))
    assert result.exit_code == exit_code
    assert text in result.message
    assert result.ok == (exit_code == 0)


# ---- a fake cluster ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class FakeSlurm:
    """Jobs whose state is a function of time; records every call."""

    def __init__(self, clock: FakeClock, timelines: dict[str, list[tuple[float, JobStatus]]]):
        self.clock = clock
        self.timelines = timelines
        self.calls: list[tuple[str, tuple[str, ...], float]] = []
        self.accounting_enabled = False
        self.fail_until = -1.0
        self.forgotten: set[str] = set()

    def _at(self, job_id: str) -> JobStatus | None:
        current = None
        for t, st in self.timelines.get(job_id, []):
            if self.clock.now >= t:
                current = st
        return current

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self.calls.append(("squeue", tuple(job_ids), self.clock.now))
        if self.clock.now < self.fail_until:
            raise ExternalCommandError(
                "squeue", 1, "slurm_load_jobs error: Socket timed out on send/recv operation"
            )
        out = {}
        for i in job_ids:
            st = self._at(i)
            if st is not None and i not in self.forgotten:
                out[i] = st
        return out

    def accounting(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self.calls.append(("sacct", tuple(job_ids), self.clock.now))
        if not self.accounting_enabled:
            raise ExternalCommandError("sacct", 1, "Slurm accounting storage is disabled")
        return {i: JobStatus(i, "COMPLETED", 0, 0, source="sacct") for i in job_ids}

    def find_tagged(self, tag: str) -> list[str]:
        return []

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.calls.append(("scancel", tuple(job_ids), self.clock.now))


def running_job(job_id: str, start: float, end: float, final: JobStatus) -> list:
    return [
        (0.0, JobStatus(job_id, "PENDING")),
        (start, JobStatus(job_id, "RUNNING")),
        (end, final),
    ]


def squeue_times(slurm: FakeSlurm) -> list[float]:
    return [t for name, _, t in slurm.calls if name == "squeue"]


def test_one_batched_call_per_poll_for_all_jobs():
    clock = FakeClock()
    slurm = FakeSlurm(
        clock,
        {
            "1": running_job("1", 0.5, 10, JobStatus("1", "COMPLETED", 0, 0)),
            "2": running_job("2", 0.5, 40, JobStatus("2", "FAILED", 2, 0)),
            "3": running_job("3", 0.5, 5, JobStatus("3", "CANCELLED", 0, 15)),
        },
    )
    final = follow(["1", "2", "3"], Poller(slurm), sleep=clock.sleep, clock=clock)
    assert {k: v.state for k, v in final.items()} == {
        "1": "COMPLETED",
        "2": "FAILED",
        "3": "CANCELLED",
    }
    assert all(name == "squeue" for name, _, _ in slurm.calls)  # no sacct: none was forgotten
    # never a call per job: each poll asks once, for the jobs not yet ended
    assert slurm.calls[0][1] == ("1", "2", "3")
    assert slurm.calls[-1][1] == ("2",)
    times = squeue_times(slurm)
    assert len(times) == len(set(times))


def test_schedule_of_a_60_second_job_backs_off_to_the_ceiling():
    clock = FakeClock()
    slurm = FakeSlurm(clock, {"9": running_job("9", 0.0, 60.0, JobStatus("9", "COMPLETED", 0, 0))})
    stats = FollowStats()
    follow(["9"], Poller(slurm), sleep=clock.sleep, clock=clock, stats=stats)
    times = squeue_times(slurm)
    assert times == [0, 1, 3, 7, 15, 31, 61]
    assert stats.polls == 7 and stats.calls == 7
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == 30


def test_a_change_of_state_restarts_the_schedule():
    clock = FakeClock()
    slurm = FakeSlurm(clock, {"5": running_job("5", 20.0, 40.0, JobStatus("5", "COMPLETED", 0, 0))})
    follow(["5"], Poller(slurm), sleep=clock.sleep, clock=clock)
    # pending: 0 1 3 7 15; seen RUNNING at 31, so 1 s again: 32 34 38; ended, seen at 46
    assert squeue_times(slurm) == [0, 1, 3, 7, 15, 31, 32, 34, 38, 46]


def test_long_pending_job_polls_at_the_ceiling():
    clock = FakeClock()
    slurm = FakeSlurm(
        clock, {"5": running_job("5", 1000.0, 1000.5, JobStatus("5", "COMPLETED", 0, 0))}
    )
    follow(["5"], Poller(slurm), sleep=clock.sleep, clock=clock)
    times = squeue_times(slurm)
    assert len(times) <= 6 + 1000 / 30 + 3  # about one call every 30 s, not a loop


def test_shorter_ceiling_for_tests():
    clock = FakeClock()
    slurm = FakeSlurm(clock, {"5": running_job("5", 0, 10.0, JobStatus("5", "COMPLETED", 0, 0))})
    follow(["5"], Poller(slurm), sleep=clock.sleep, clock=clock, ceiling=2)
    times = squeue_times(slurm)
    assert times[:4] == [0, 1, 3, 5] and times[-1] >= 10


def test_failed_polls_back_off_and_are_reported_once_per_call():
    clock = FakeClock()
    slurm = FakeSlurm(clock, {"5": running_job("5", 0, 20.0, JobStatus("5", "COMPLETED", 0, 0))})
    slurm.fail_until = 10.0
    errors: list[str] = []
    stats = FollowStats()
    final = follow(
        ["5"],
        Poller(slurm),
        sleep=clock.sleep,
        clock=clock,
        on_error=lambda e: errors.append(str(e)),
        stats=stats,
    )
    assert final["5"].state == "COMPLETED"
    assert stats.failures == len(errors) == 4  # at 0, 1, 3, 7
    assert squeue_times(slurm)[:5] == [0, 1, 3, 7, 15]


def test_forgotten_job_asks_sacct_once_and_survives_disabled_accounting():
    clock = FakeClock()
    slurm = FakeSlurm(clock, {"5": [(0.0, JobStatus("5", "RUNNING"))]})
    slurm.forgotten.add("5")  # gone from the controller (MinJobAge passed)
    poller = Poller(slurm)
    final = follow(["5"], poller, sleep=clock.sleep, clock=clock)
    assert final["5"].state == "UNKNOWN"
    assert [c[0] for c in slurm.calls] == ["squeue", "sacct"]
    assert not poller.accounting_works
    assert "final state is unknown" in outcome(final["5"]).message
    # accounting is not asked again in this process once it has failed
    poller.poll(["5"])
    assert [c[0] for c in slurm.calls] == ["squeue", "sacct", "squeue"]


def test_forgotten_job_found_in_accounting():
    clock = FakeClock()
    slurm = FakeSlurm(clock, {"5": [(0.0, JobStatus("5", "RUNNING"))]})
    slurm.forgotten.add("5")
    slurm.accounting_enabled = True
    final = follow(["5"], Poller(slurm), sleep=clock.sleep, clock=clock)
    assert final["5"].state == "COMPLETED" and final["5"].source == "sacct"


def test_on_change_sees_each_state_once():
    clock = FakeClock()
    slurm = FakeSlurm(clock, {"5": running_job("5", 2, 8, JobStatus("5", "TIMEOUT", 0, 15))})
    seen: list[str] = []
    follow(
        ["5"],
        Poller(slurm),
        sleep=clock.sleep,
        clock=clock,
        on_change=lambda s: seen.append(s.state),
    )
    assert seen == ["PENDING", "RUNNING", "TIMEOUT"]


# ---- tailing ----------------------------------------------------------------------------------


def test_tail_copies_appended_bytes_once(tmp_path: Path):
    out: list[bytes] = []
    f = tmp_path / "job.out"
    tail = Tail(str(f), out.append)
    assert tail.pump() == 0 and not tail.seen  # not written yet: a pending job
    f.write_bytes(b"one\n")
    assert tail.pump() == 4
    with f.open("ab") as fh:
        fh.write(b"two\xff\n")  # bytes, not text: nothing is decoded
    tail.pump()
    tail.pump()
    assert b"".join(out) == b"one\ntwo\xff\n"


def test_tail_restarts_when_the_file_is_rewritten(tmp_path: Path):
    out: list[bytes] = []
    f = tmp_path / "job.out"
    f.write_bytes(b"a long first version\n")
    tail = Tail(str(f), out.append)
    tail.pump()
    f.write_bytes(b"new\n")
    tail.pump()
    assert out[-1] == b"new\n"


def test_follow_streams_output_written_while_the_job_runs(tmp_path: Path):
    clock = FakeClock()
    f = tmp_path / "job.out"
    slurm = FakeSlurm(clock, {"5": running_job("5", 1, 6, JobStatus("5", "COMPLETED", 0, 0))})
    chunks: list[bytes] = []
    writes = {2.0: b"first\n", 4.0: b"second\n", 6.0: b"last words\n"}

    def sleep(seconds: float) -> None:
        before = clock.now
        clock.sleep(seconds)
        for t, data in writes.items():
            if before < t <= clock.now:
                with f.open("ab") as fh:
                    fh.write(data)

    follow(["5"], Poller(slurm), tails=[Tail(str(f), chunks.append)], sleep=sleep, clock=clock)
    assert b"".join(chunks) == b"first\nsecond\nlast words\n"
    # streamed as it came, not only at the end
    assert chunks[0] == b"first\n"
    # polls still follow the schedule, not the 0.5 s tail interval
    assert len(squeue_times(slurm)) <= 5
