"""The jobs slurmc submitted, against what Slurm says about them now.

Records (:mod:`slurmc.usecases.records`) keep what was submitted; this module asks
Slurm for the states of many jobs in one batched call, writes final states back (a
finished job is never asked about again), follows one job to its end, and prunes old
records. The CLI (:mod:`slurmc.cli.jobs`) only prints.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurmc.backends.base import FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from slurmc.usecases.records import Record

OnDamaged = Callable[[Path, str], None]


def find_one(
    env: Mapping[str, str], job_id: str, cluster: str | None, on_damaged: OnDamaged
) -> tuple[Path, Record]:
    """The record of *job_id* (on *cluster*, or the one of this cluster when several)."""
    from slurmc.backends.sbatch import configured_cluster
    from slurmc.errors import ValidationError
    from slurmc.usecases import records

    found = records.find(env, job_id, cluster, on_damaged=on_damaged)
    if not found:
        raise ValidationError(
            f"no record of job {job_id} in {records.jobs_dir(env)}"
            + (f" for cluster {cluster}" if cluster else "")
            + "; `slurmc jobs` lists the jobs slurmc submitted"
        )
    if len(found) > 1:
        here = configured_cluster(env)
        mine = [pr for pr in found if pr[1].get("cluster") == here]
        if len(mine) == 1:
            return mine[0]
        names = ", ".join(str(r.get("cluster") or r.get("site")) for _, r in found)
        raise ValidationError(
            f"job {job_id} was recorded on several clusters ({names}); pass --cluster"
        )
    return found[0]


def final_of(status: JobStatus) -> dict[str, Any]:
    return {
        "state": status.state,
        "exit_code": status.exit_code,
        "signal": status.signal,
        "source": status.source,
        "seen_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def stored_state(record: Record) -> JobStatus | None:
    """The final state kept in the record (a real end only, not "unknown")."""
    final = record.get("final") or {}
    if final.get("state") in FINAL_STATES:
        return JobStatus(
            str(record["job_id"]),
            final["state"],
            final.get("exit_code"),
            final.get("signal"),
            source="record",
        )
    return None


def live_states(
    env: Mapping[str, str], recs: list[tuple[Path, Record]], warn: Callable[[str], None]
) -> dict[Path, JobStatus]:
    """States for *recs*: stored final states, else one batched query for the rest.

    Final states learnt here are written back, so a finished job is never asked about
    again. A query that fails leaves the states out (shown as "?").
    """
    from slurmc.backends.sbatch import SlurmCommands, configured_cluster
    from slurmc.errors import SlurmcError
    from slurmc.usecases import records
    from slurmc.usecases.follow import Poller

    out: dict[Path, JobStatus] = {}
    here = configured_cluster(env)
    ask: dict[str, Path] = {}
    for path, rec in recs:
        stored = stored_state(rec)
        if stored is not None:
            out[path] = stored
        elif rec.get("cluster") and here and rec["cluster"] != here:
            continue  # another cluster's job: this controller cannot say
        else:
            ask[str(rec["job_id"])] = path
    if not ask:
        return out
    try:
        statuses = Poller(SlurmCommands()).poll(list(ask))
    except SlurmcError as exc:
        warn(f"warning: could not ask Slurm for the jobs' states: {exc}")
        return out
    for job_id, st in statuses.items():
        out[ask[job_id]] = st
        if st.final:
            with contextlib.suppress(OSError):
                records.update(ask[job_id], final=final_of(st))
    return out


def follow_and_report(
    env: Mapping[str, str],
    job_id: str,
    output: str | None,
    error: str | None,
    record: Path | None,
    *,
    stdout: Callable[[bytes], None],
    stderr: Callable[[bytes], None],
    note: Callable[[str], None],
) -> int:
    """Stream the job's files until it ends; say how it ended; return the exit code."""
    from slurmc.backends.sbatch import SlurmCommands
    from slurmc.errors import SlurmcError
    from slurmc.usecases import digests, records
    from slurmc.usecases.follow import FollowStats, Poller, Tail, follow, outcome, poll_ceiling

    tails = []
    if output:
        tails.append(Tail(output, stdout))
    if error and error != output:
        tails.append(Tail(error, stderr))
    digest = None
    if record is not None:
        rec = records.load(record) or {}
        image = rec.get("image") or {}
        if image.get("kind") == "file" and not image.get("sha256"):
            digest = digests.BackgroundDigest(env, record).start()
    failing = [False]

    def on_change(st: JobStatus) -> None:
        failing[0] = False
        if not st.final and st.state != "UNKNOWN":
            reason = f" ({st.reason})" if st.reason and st.reason != "None" else ""
            note(f"job {job_id} is {st.state}{reason}")

    def on_error(exc: SlurmcError) -> None:
        if not failing[0]:
            note(f"warning: Slurm did not answer about job {job_id} ({exc}); asking again later")
        failing[0] = True

    stats = FollowStats()
    try:
        final = follow(
            [job_id],
            Poller(SlurmCommands()),
            tails=tails,
            sleep=time.sleep,
            clock=time.monotonic,
            ceiling=poll_ceiling(env),
            on_change=on_change,
            on_error=on_error,
            stats=stats,
        )[job_id]
    except KeyboardInterrupt:
        note(
            f"stopped following job {job_id}; it goes on (slurmc jobs logs {job_id} --follow "
            f"to follow it again, slurmc jobs cancel {job_id} to stop it)"
        )
        return 130
    finally:
        if digest is not None:
            digest.finish()
    if os.environ.get("SLURMC_FOLLOW_STATS"):
        note(f"followed job {job_id} with {stats.polls} polls ({stats.calls} Slurm commands)")
    if record is not None and final.final:
        with contextlib.suppress(OSError):
            records.update(record, final=final_of(final))
    result = outcome(final)
    if output and tails and not tails[0].seen:
        note(f"job {job_id} wrote no output file ({output})")
    note(result.message)
    return result.exit_code


def prune(
    env: Mapping[str, str], older_than_days: float, *, dry_run: bool, on_damaged: OnDamaged
) -> tuple[int, int]:
    """Remove the records of jobs submitted over *older_than_days* ago whose end is known;
    return how many went (or would go) and how many older ones were kept (end unknown)."""
    from slurmc.usecases import records

    cutoff = time.time() - older_than_days * 86400
    removed = kept_open = 0
    for path, rec in records.all_records(env, on_damaged=on_damaged):
        if records.submitted_epoch(rec) >= cutoff:
            continue
        if stored_state(rec) is None:
            kept_open += 1
            continue
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        removed += 1
    return removed, kept_open
