"""``slurmc jobs ...`` and what ``slurmc run --wait`` does after submitting.

Thin: parse, call :mod:`slurmc.usecases.records` / :mod:`slurmc.usecases.follow`, print.
Slurm is asked
through :class:`slurmc.backends.sbatch.SlurmCommands`, one batched call at a time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from slurmc.cli import completion
from slurmc.cli.common import SUGGEST_COMMANDS, handle_errors
from slurmc.usecases import jobs

if TYPE_CHECKING:
    from slurmc.backends.base import JobStatus
    from slurmc.usecases.records import ImageInfo, Record
    from slurmc.usecases.submit import SubmitResult

jobs_app = typer.Typer(
    suggest_commands=SUGGEST_COMMANDS,
    help="The jobs slurmc submitted: list (default), show, logs, cancel.",
    invoke_without_command=True,
)

JOB_ID = typer.Argument(
    ..., help="A job id, as `slurmc run` printed it.", autocompletion=completion.job_ids
)
CLUSTER = typer.Option(None, "--cluster", help="The cluster, when the id was used on several.")


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


# ---- helpers ----------------------------------------------------------------------------------


def _note(message: str) -> None:
    typer.echo(f"slurmc: {message}", err=True)


def _damaged(path: Path, why: str) -> None:
    _note(f"warning: skipping the damaged job record {path} ({why}); remove it if unneeded")


def _exit_text(st: JobStatus | None) -> str:
    if st is None or st.exit_code is None:
        return "-"
    return f"sig{st.signal}" if st.signal else str(st.exit_code)


def _status_dict(st: JobStatus | None) -> dict[str, Any] | None:
    if st is None:
        return None
    return {
        "state": st.state,
        "exit_code": st.exit_code,
        "signal": st.signal,
        "reason": st.reason,
        "source": st.source,
    }


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- slurmc jobs ----------------------------------------------------------------------------


@jobs_app.callback(invoke_without_command=True)
@handle_errors
def jobs_list(
    ctx: typer.Context,
    last: int = typer.Option(20, "--last", "-n", help="Show the N most recent (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the jobs slurmc submitted, newest first, with their state now."""
    if ctx.invoked_subcommand is not None:
        return
    from slurmc.backends.sbatch import configured_cluster
    from slurmc.errors import ValidationError
    from slurmc.usecases import records

    if last < 0:
        raise ValidationError(f"--last: {last} is negative; give a count, or 0 for all")
    env = dict(os.environ)
    recs = records.newest_records(env, last, on_damaged=_damaged)
    states = jobs.live_states(env, recs, _note)
    if as_json:
        rows = []
        for path, rec in recs:
            image = rec.get("image") or {}
            rows.append(
                {
                    "job_id": rec.get("job_id"),
                    "cluster": rec.get("cluster"),
                    "site": rec.get("site"),
                    "submitted_at": rec.get("submitted_at"),
                    "status": _status_dict(states.get(path)),
                    "command": rec.get("command"),
                    "image": image.get("spec"),
                    "image_file": image.get("realpath") or image.get("path"),
                    "image_sha256": image.get("sha256"),
                    "output": rec.get("output"),
                    "record": str(path),
                }
            )
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not recs:
        typer.echo(f"no jobs recorded yet (records live in {records.jobs_dir(env)})")
        return
    typer.echo(
        f"{'JOBID':<10} {'STATE':<13} {'EXIT':<5} {'SUBMITTED':<16}  {'SITE':<12} "
        f"{'IMAGE':<28} COMMAND"
    )
    here = configured_cluster(env)
    for path, rec in recs:
        st = states.get(path)
        if st is not None:
            state = st.state
        elif rec.get("cluster") and here and rec["cluster"] != here:
            state = "other-cluster"
        else:
            state = "?"
        when = str(rec.get("submitted_at", ""))[:16].replace("T", " ")
        spec = (rec.get("image") or {}).get("spec") or ""
        typer.echo(
            f"{rec.get('job_id', ''):<10} {state:<13} {_exit_text(st):<5} {when:<16}  "
            f"{_short(str(rec.get('site', '')), 12):<12} {_short(spec, 28):<28} "
            f"{_short(str(rec.get('command_line', '')), 60)}"
        )


@jobs_app.command("show")
@handle_errors
def jobs_show(
    job_id: str = JOB_ID,
    cluster: str = CLUSTER,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    no_digest: bool = typer.Option(
        False, "--no-digest", help="Do not hash the image now if its digest is not known yet."
    ),
) -> None:
    """Everything recorded about a job, its state now, and its image file and digest."""
    from slurmc.usecases import digests, records

    env = dict(os.environ)
    path, rec = jobs.find_one(env, job_id, cluster, _damaged)
    image = cast("ImageInfo", dict(rec.get("image") or {}))
    if not no_digest and not image.get("sha256") and image.get("kind") == "file":
        size = image.get("size") or 0
        if size > digests.DIGEST_AT_SUBMIT_MAX:
            _note(f"hashing the image file ({size / 2**30:.1f} GiB) once; the digest is kept")
        if digests.compute_digest(env, image):
            try:
                rec = records.update(path, image=image) or rec
            except OSError:
                rec = {**rec, "image": image}
    check, detail = digests.check_image(image)
    st = jobs.live_states(env, [(path, rec)], _note).get(path)
    if as_json:
        out = {
            **rec,
            "status": _status_dict(st),
            "image_check": {"result": check, "detail": detail},
            "record": str(path),
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    sys.stdout.write(_render_show(path, rec, image, st, check, detail))


def _render_show(
    path: Path, rec: Record, image: ImageInfo, st: JobStatus | None, check: str, detail: str
) -> str:
    from slurmc.usecases.follow import outcome

    where = f"cluster {rec.get('cluster')}, " if rec.get("cluster") else ""
    lines = [f"job        {rec.get('job_id')} ({where}site {rec.get('site')})"]
    if st is None:
        lines.append("state      ? (Slurm could not be asked)")
    elif st.final or st.state == "UNKNOWN":
        lines.append(f"state      {st.state}: {outcome(st).message} [{st.source}]")
    else:
        reason = f" ({st.reason})" if st.reason and st.reason != "None" else ""
        lines.append(f"state      {st.state}{reason}")
    lines += [
        f"submitted  {rec.get('submitted_at')} on {rec.get('submit_host')}"
        + (
            f" (found by its tag after {rec.get('submit_attempts')} sbatch call(s))"
            if rec.get("recovered_by_tag")
            else ""
        ),
        f"directory  {rec.get('cwd')}",
        f"command    {rec.get('command_line')}",
        f"comment    {rec.get('comment')}  (tag {rec.get('tag')})",
        f"name       {rec.get('job_name')}",
    ]
    for key in ("partition", "account", "array"):
        if rec.get(key):
            lines.append(f"{key:<10} {rec[key]}")
    lines.append(f"output     {rec.get('output') or rec.get('output_pattern')}")
    if rec.get("error"):
        lines.append(f"error      {rec['error']}")
    if image:
        lines.append(
            f"image      {image.get('spec')}  ({image.get('source')}, {image.get('runtime')})"
        )
    if image.get("registry_digest"):  # what the registry served when it was pulled
        lines.append(f"  pulled   {image.get('spec')}@{image['registry_digest']}")
    kind = image.get("kind")
    if kind in ("file", "directory"):
        lines.append(f"  file     {image.get('realpath')}")
        if image.get("realpath") != image.get("path"):
            lines.append(f"  via      {image.get('path')}")
        mtime = time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime((image.get("mtime_ns") or 0) / 1e9)
        )
        lines.append(
            f"  size     {image.get('size')} bytes, modified {mtime}, inode {image.get('inode')}"
        )
        if image.get("sha256"):
            lines.append(f"  sha256   {image['sha256']}  (computed at {image.get('sha256_when')})")
        elif kind == "directory":
            lines.append("  sha256   - (a directory image: its identity is checked instead)")
        else:
            lines.append(
                "  sha256   not computed (the file changed since submission, or --no-digest)"
            )
        lines.append(f"  check    {check}: {detail}")
    elif kind == "missing":
        lines.append(
            f"  file     {image.get('path')} (did not exist at submission: pulled by the job)"
        )
    elif kind == "uri":
        lines.append(f"  uri      {image.get('path')} (resolved by the runtime; no file to hash)")
    lines.append(f"record     {path}")
    lines.append("script:")
    lines += ["  " + ln for ln in str(rec.get("script", "")).splitlines()]
    return "\n".join(lines) + "\n"


@jobs_app.command("logs")
@handle_errors
def jobs_logs(
    job_id: str = JOB_ID,
    cluster: str = CLUSTER,
    follow_: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing what the job writes until it ends."
    ),
) -> None:
    """Print a job's output file (and its --error file to stderr); --follow until it ends."""
    from slurmc.errors import ValidationError

    env = dict(os.environ)
    path, rec = jobs.find_one(env, job_id, cluster, _damaged)
    output, error = rec.get("output"), rec.get("error")
    if not output:
        raise ValidationError(
            f"job {job_id} has no single output file (an array job writes one per task: "
            f"{rec.get('output_pattern')} in {rec.get('cwd')})"
        )
    if follow_:
        stored = jobs.stored_state(rec)
        if stored is None:
            code = jobs.follow_and_report(
                env,
                str(rec["job_id"]),
                output,
                error,
                path,
                stdout=_stdout_write,
                stderr=_stderr_write,
                note=_note,
            )
            raise typer.Exit(code)
    if not os.path.exists(output):
        raise ValidationError(
            f"{output} does not exist (yet); a pending job has written nothing: "
            f"use --follow to wait for it"
        )
    if output == os.devnull:  # --output=/dev/null: the job's output was thrown away
        return
    if not os.path.isfile(output):
        raise ValidationError(
            f"{output} is not a regular file (a FIFO, device or directory); "
            "slurmc prints only regular output files"
        )
    _copy_file(output, _stdout_write)
    if error and error != output and os.path.exists(error):
        _copy_file(error, _stderr_write)


def _copy_file(path: str, write: Any) -> None:
    from slurmc.usecases.follow import Tail

    Tail(path, write).pump()


@jobs_app.command("cancel")
@handle_errors
def jobs_cancel(job_id: str = JOB_ID, cluster: str = CLUSTER) -> None:
    """Cancel a job (scancel)."""
    from slurmc.backends.sbatch import SlurmCommands
    from slurmc.usecases import records

    env = dict(os.environ)
    records.check_job_id(job_id)
    found = records.find(env, job_id, cluster)
    if not found:
        _note(f"no record of job {job_id}; asking scancel anyway")
    SlurmCommands().cancel([job_id])
    typer.echo(f"Cancel requested for job {job_id}")


# ---- following -----------------------------------------------------------------------------


def _stdout_write(data: bytes) -> None:
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader went away (`slurmc run --wait ... | head`): drop the rest of the
        # output but keep following, so that the exit status is still the job's.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _stderr_write(data: bytes) -> None:
    sys.stderr.flush()
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()


def wait_for(result: SubmitResult, env: Mapping[str, str]) -> int:
    """``slurmc run --wait``: follow the job just submitted; return its exit code."""
    from slurmc.usecases.jobs import follow_and_report

    job = result.submission.job_id
    return follow_and_report(
        env,
        job,
        result.output,
        result.error,
        result.record,
        stdout=_stdout_write,
        stderr=_stderr_write,
        note=_note,
    )


@jobs_app.command("prune")
@handle_errors
def jobs_prune(
    older_than: float = typer.Option(
        ..., "--older-than", help="Remove records of jobs submitted more than DAYS ago."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; remove nothing."),
) -> None:
    """Remove the records of old jobs that are known to have ended (retention).

    A record whose job's end slurmc has not learnt yet is kept: run `slurmc jobs -n 0`
    first to ask Slurm about them."""
    from slurmc.errors import ValidationError
    from slurmc.usecases.jobs import prune

    if older_than < 0:
        raise ValidationError(f"--older-than: {older_than:g} is negative; give days, e.g. 90")
    removed, kept_open = prune(dict(os.environ), older_than, dry_run=dry_run, on_damaged=_damaged)
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {removed} record(s) of jobs submitted over {older_than:g} days ago")
    if kept_open:
        typer.echo(
            f"kept {kept_open} older record(s) whose end is not known yet "
            "(`slurmc jobs -n 0` asks Slurm about them)"
        )
