"""The default backend: Slurm's own commands (sbatch --parsable, salloc, srun, squeue...).

:class:`SbatchBackend` submits; :class:`SlurmCommands` asks about jobs. Every query is
one call for all the jobs it is given, as cluster admins ask of tools (no per-job
loops over squeue/sacct).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from slurmc import proc
from slurmc.backends import salloc
from slurmc.backends.base import FINAL_STATES, TAG_RE, JobStatus, Submission, parse_parsable
from slurmc.errors import ExternalCommandError, SubmissionError

#: How long one sbatch may take before slurmc kills it (it retries EAGAIN itself for
#: about two minutes, so this must be longer). ``$SLURMC_SUBMIT_TIMEOUT`` overrides it.
SUBMIT_TIMEOUT = 300.0
#: How long one squeue/sacct/scancel may take.
QUERY_TIMEOUT = 120.0

#: squeue -O fields, each written ``Field:|``: an empty width prints the whole value (a
#: bare ``Comment`` is cut at 20 characters) and ``|`` follows it. The comment comes last
#: because it may hold the separator itself.
_SQUEUE_FIELDS = ("JobID", "ArrayJobID", "State", "exit_code", "Reason", "Comment")
_SEP = "|"


def _submit_timeout(env: Mapping[str, str]) -> float:
    text = env.get("SLURMC_SUBMIT_TIMEOUT")
    if not text:
        return SUBMIT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise SubmissionError(
            f"SLURMC_SUBMIT_TIMEOUT={text!r} is invalid; expected seconds such as 300"
        )
    return value


class SbatchBackend:
    name = "sbatch"

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = _submit_timeout(os.environ) if timeout is None else timeout

    def submit(self, script: str, *, cwd: str) -> Submission:
        salloc.check_slurm_conf(os.environ)
        # The script goes in on stdin: sbatch reads its #SBATCH lines from there.
        result = proc.run(["sbatch", "--parsable"], input=script, cwd=cwd, timeout=self.timeout)
        return parse_parsable(result.stdout)

    def run_interactive(self, options: list[str], step: str, *, cwd: str) -> int:
        return salloc.run_interactive(options, step, cwd=cwd)


class SlurmCommands:
    """Job queries through squeue, sacct and scancel: one call per question."""

    def __init__(self, timeout: float = QUERY_TIMEOUT) -> None:
        self.timeout = timeout

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """squeue for all *job_ids* at once; ``-t all`` includes jobs finished within the
        controller's MinJobAge, with their exit status, so no scontrol call is needed."""
        if not job_ids:
            return {}
        fields = ",".join(f"{f}:{_SEP}" for f in _SQUEUE_FIELDS)
        argv = ["squeue", "-h", "-a", "-t", "all", "-j", ",".join(job_ids), "-O", fields]
        try:
            result = proc.run(argv, timeout=self.timeout)
        except ExternalCommandError as exc:
            # squeue -j with one id the controller no longer knows exits 1.
            if "invalid job id" in exc.stderr.lower():
                return {}
            raise
        return parse_squeue(result.stdout, job_ids)

    def accounting(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        argv = ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids)]
        result = proc.run([*argv, "-o", "JobIDRaw,State,ExitCode"], timeout=self.timeout)
        return parse_sacct(result.stdout, job_ids)

    def find_tagged(self, tag: str) -> list[str]:
        argv = [
            "squeue",
            "-h",
            "-a",
            "--me",
            "-t",
            "all",
            "-O",
            f"ArrayJobID:{_SEP},Comment:{_SEP}",
        ]
        result = proc.run(argv, timeout=self.timeout)
        return parse_tagged(result.stdout, tag)

    def cancel(self, job_ids: Sequence[str]) -> None:
        proc.run(["scancel", *job_ids], timeout=self.timeout)


def _split(line: str, n: int) -> list[str] | None:
    """The *n* fields of a line where each field is followed by ``|``."""
    line = line.rstrip()
    if not line.endswith(_SEP):
        return None
    parts = line[: -len(_SEP)].split(_SEP, n - 1)
    return [p.strip() for p in parts] if len(parts) == n else None


def decode_wait_status(raw: int) -> tuple[int, int]:
    """A wait(2) status: ``(exit code, signal)``."""
    return (raw >> 8) & 0xFF, raw & 0x7F


def parse_squeue_exit_code(text: str) -> tuple[int | None, int | None]:
    """squeue's ``exit_code`` field, in the form of the Slurm that printed it: a raw
    wait(2) status (``768``, Slurm 22.05, Debian 12) or ``EXIT:SIGNAL`` (``3:0``, as
    sacct and scontrol print it; Slurm 24.11, Debian 13)."""
    text = text.strip()
    if text.isdigit():
        return decode_wait_status(int(text))
    return parse_exit_code(text)


def parse_squeue(stdout: str, wanted: Sequence[str] = ()) -> dict[str, JobStatus]:
    """Parse ``squeue -O JobID:|,ArrayJobID:|,State:|,exit_code:|,Reason:|,Comment:|``.

    A job array answers under its base id with one status for the whole array (its
    tasks are rows whose ArrayJobID is the base id): still running while any task
    is, else COMPLETED if every task completed, else its first task that did not.
    """
    rows: list[JobStatus] = []
    groups: dict[str, list[JobStatus]] = {}
    for line in stdout.splitlines():
        parts = _split(line, len(_SQUEUE_FIELDS))
        if not parts or not parts[0]:
            continue
        job_id, array_id, state, raw, reason, _comment = parts
        state = state.split()[0] if state else "UNKNOWN"
        code: int | None = None
        sig: int | None = None
        if state in FINAL_STATES:
            code, sig = parse_squeue_exit_code(raw)
        status = JobStatus(job_id, state, code, sig, reason, "squeue")
        rows.append(status)
        groups.setdefault(array_id or job_id, []).append(status)
    out = {st.job_id: st for st in rows}
    for base, tasks in groups.items():
        if len(tasks) > 1 or tasks[0].job_id != base:
            out[base] = _array_status(base, tasks)
    if wanted:
        want = set(wanted)
        out = {k: v for k, v in out.items() if k in want}
    return out


def _array_status(base: str, tasks: list[JobStatus]) -> JobStatus:
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.state] = counts.get(t.state, 0) + 1
    summary = "array: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    live = [t for t in tasks if not t.final]
    if live:
        running = [t for t in live if t.state == "RUNNING"]
        return JobStatus(base, (running or live)[0].state, reason=summary, source="squeue")
    bad = [t for t in tasks if t.state != "COMPLETED" or t.exit_code or t.signal]
    first = bad[0] if bad else tasks[0]
    return JobStatus(base, first.state, first.exit_code, first.signal, summary, "squeue")


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """``3:0`` (sacct, scontrol) -> ``(3, 0)``."""
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def parse_sacct(stdout: str, wanted: Sequence[str] = ()) -> dict[str, JobStatus]:
    """Parse ``sacct -n -P -X -o JobIDRaw,State,ExitCode`` (``CANCELLED by 0`` -> CANCELLED)."""
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 3 or not parts[0].strip():
            continue
        job_id, state, exit_text = (p.strip() for p in parts[:3])
        code, sig = parse_exit_code(exit_text)
        out[job_id] = JobStatus(
            job_id, state.split()[0] if state else "UNKNOWN", code, sig, "", "sacct"
        )
    return out


def parse_tagged(stdout: str, tag: str) -> list[str]:
    """Job ids whose comment carries exactly *tag* (``squeue -O ArrayJobID:|,Comment:|``)."""
    ids = set()
    for line in stdout.splitlines():
        parts = _split(line, 2)
        if parts and parts[0].isdigit() and tag in TAG_RE.findall(parts[1]):
            ids.add(parts[0])
    return sorted(ids, key=int)


_CLUSTER_NAME = re.compile(r"^\s*ClusterName\s*=\s*([^\s#]+)", re.IGNORECASE | re.MULTILINE)


def configured_cluster(env: Mapping[str, str]) -> str | None:
    """The ClusterName in this node's slurm.conf (a file read, no call to the controller).

    None where the file cannot be read (a configless site): the caller falls back.
    """
    path = env.get("SLURM_CONF") or "/etc/slurm/slurm.conf"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            m = _CLUSTER_NAME.search(f.read(1 << 20))
    except OSError:
        return None
    return m.group(1).lower() if m else None
