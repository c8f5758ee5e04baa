"""Following, recording and safely submitting jobs, on the real local Slurm.

Accounting is off on this cluster, so sacct fails here: every test below runs in the
"sacct disabled" case. The SIGSTOP test pauses slurmctld for a few seconds (less than
Slurm's default 10 s message time-out, so other clients only wait) and always resumes
it in a ``finally``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .conftest import slurmc, wait_job

pytestmark = pytest.mark.cluster

DEVCLUSTER_DIR = Path(os.environ.get("SLURMC_DEVCLUSTER_DIR", "/var/tmp/slurmc-devcluster"))


def slurmc_jobs(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120):
    return slurmc("jobs", *args, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture
def image(images, tmp_path: Path) -> Path:
    """A private copy of the plain test image (the shared one may be rebuilt meanwhile)."""
    dest = tmp_path / "images" / "plain.sqfs"
    dest.parent.mkdir()
    shutil.copyfile(images.plain_sqfs, dest)
    return dest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private record directory, and a short polling ceiling (a private test cluster)."""
    return {"XDG_STATE_HOME": str(tmp_path / "state"), "SLURMC_POLL_MAX": "2"}


def run(*args: str, cwd: Path, env: dict[str, str], timeout: float = 180):
    return slurmc("run", "--site", "devcluster", *args, cwd=cwd, env=env, timeout=timeout)


def record(env: dict[str, str], job_id: str) -> dict:
    files = list((Path(env["XDG_STATE_HOME"]) / "slurmc" / "jobs").glob(f"{job_id}.*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def id_from(stderr_or_stdout: str) -> str:
    line = next(ln for ln in stderr_or_stdout.splitlines() if ln.startswith("Submitted job "))
    return line.split()[2]


def tagged_jobs(tag: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-a", "--me", "-t", "all", "-O", "JobID:|,ArrayJobID:|,Comment:|"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ln.split("|")[0] for ln in out.splitlines() if tag in ln]


# ---- run --wait ------------------------------------------------------------------------------


def test_wait_returns_a_failing_jobs_exit_status(cluster, image, tmp_path, env):
    r = run("--wait", str(image), "--", "sh", "-c", "echo out-1; echo out-2; exit 3",
            cwd=tmp_path, env=env)  # fmt: skip
    assert r.returncode == 3, r.stderr
    # the job's output file holds srun's own stderr too ("srun: error: ... Exited with
    # exit code 3"), written when the task ends: it may land between the task's lines
    own = [ln for ln in r.stdout.splitlines() if not ln.startswith("srun: ")]
    assert own == ["out-1", "out-2"], r.stdout
    assert "Submitted job" not in r.stdout  # stdout is the job's output
    job = id_from(r.stderr)
    assert f"job {job} failed with exit code 3" in r.stderr
    assert record(env, job)["final"]["state"] == "FAILED"


def test_wait_returns_zero_for_success(cluster, image, tmp_path, env):
    r = run("--wait", str(image), "--", "echo", "fine", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "fine\n"
    assert f"job {id_from(r.stderr)} completed (exit code 0)" in r.stderr


def test_wait_streams_output_as_it_is_written(cluster, image, tmp_path, env):
    """The first line arrives while the job still runs, not at its end."""
    exe = shutil.which("slurmc")
    assert exe
    script = "echo first; sleep 8; echo second"
    p = subprocess.Popen(
        [exe, "run", "--site", "devcluster", "--wait", str(image), "--", "sh", "-c", script],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[tuple[float, str]] = []
    assert p.stdout is not None
    for line in p.stdout:
        seen.append((time.monotonic(), line))
    p.wait(120)
    end = time.monotonic()
    assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    assert [ln for _, ln in seen] == ["first\n", "second\n"]
    assert end - seen[0][0] >= 6, "the first line came only at the end"


def test_wait_says_when_the_job_was_cancelled(cluster, image, tmp_path, env):
    exe = shutil.which("slurmc")
    assert exe
    p = subprocess.Popen(
        [exe, "run", "--site", "devcluster", "--wait", str(image), "--", "sleep", "300"],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        job = ""
        for line in p.stderr:
            if line.startswith("Submitted job "):
                job = line.split()[2]
            if "is RUNNING" in line:
                break
        assert job
        subprocess.run(["scancel", job], check=True)
        p.wait(120)
        rest = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143
    assert f"job {job} was cancelled" in rest


def test_wait_is_for_one_batch_job(cluster, image, tmp_path, env):
    r = run("--wait", "--array", "1-2", str(image), "--", "true", cwd=tmp_path, env=env)
    assert r.returncode == 1 and r.stderr.startswith("slurmc: error: --wait")


# ---- records and slurmc jobs -----------------------------------------------------------------


def test_every_submission_is_recorded_and_show_names_the_image_and_its_digest(
    cluster, image, tmp_path, env
):
    ids = [id_from(run(str(image), "--", "echo", str(i), cwd=tmp_path, env=env).stdout)
           for i in range(2)]  # fmt: skip
    for job in ids:
        wait_job(job)
    r = slurmc_jobs("--json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["job_id"]: row for row in json.loads(r.stdout)}
    assert set(ids) <= set(rows)
    assert all(rows[j]["status"]["state"] == "COMPLETED" for j in ids)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    r = slurmc_jobs("show", ids[0], "--json", cwd=tmp_path, env=env)
    shown = json.loads(r.stdout)
    assert shown["image"]["realpath"] == str(image)
    assert shown["image"]["sha256"] == digest
    assert shown["image_check"]["result"] == "unchanged"
    assert shown["command"] == ["echo", "0"] and shown["cwd"] == str(tmp_path)
    assert shown["tag"] in shown["script"]
    r = slurmc_jobs("show", ids[0], cwd=tmp_path, env=env)
    assert f"file     {image}" in r.stdout and f"sha256   {digest}" in r.stdout


def test_a_big_image_is_hashed_on_demand_by_show(cluster, image, tmp_path, env):
    env = {**env, "SLURMC_DIGEST_SUBMIT_MAX": "1000"}
    job = id_from(run(str(image), "--", "true", cwd=tmp_path, env=env).stdout)
    assert "sha256" not in record(env, job)["image"]
    r = slurmc_jobs("show", job, "--json", cwd=tmp_path, env=env)
    assert json.loads(r.stdout)["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert record(env, job)["image"]["sha256"]  # kept for next time
    wait_job(job)


def test_logs_follow_shows_lines_written_after_it_started_and_ends_with_the_job(
    cluster, image, tmp_path, env
):
    script = "echo before; sleep 4; for i in 1 2 3; do echo after-$i; sleep 1; done"
    r = run(str(image), "--", "sh", "-c", script, cwd=tmp_path, env=env)
    job = id_from(r.stdout)
    out = Path(record(env, job)["output"])
    deadline = time.monotonic() + 60
    while not (out.exists() and "before" in out.read_text()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    assert "after-1" not in out.read_text()
    started = time.monotonic()
    f = slurmc_jobs("logs", job, "--follow", cwd=tmp_path, env=env, timeout=120)
    took = time.monotonic() - started
    assert f.returncode == 0, f.stderr
    assert f.stdout == "before\nafter-1\nafter-2\nafter-3\n"
    assert f"job {job} completed" in f.stderr
    assert took < 30
    fields = wait_job(job, timeout=5)
    assert fields["JobState"] == "COMPLETED"
    r = slurmc_jobs("logs", job, cwd=tmp_path, env=env)
    assert r.stdout == "before\nafter-1\nafter-2\nafter-3\n"


def test_cancel(cluster, image, tmp_path, env):
    job = id_from(run(str(image), "--", "sleep", "300", cwd=tmp_path, env=env).stdout)
    r = slurmc_jobs("cancel", job, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert wait_job(job)["JobState"] == "CANCELLED"
    r = slurmc_jobs(cwd=tmp_path, env=env)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(job + " "))
    assert line.split()[1] == "CANCELLED"


def test_a_job_the_controller_forgot_with_accounting_off(cluster, tmp_path, env):
    """squeue no longer knows it and sacct is disabled here: the state is UNKNOWN, no error."""
    from slurmc.usecases import records

    records.write(env, records.new_record(job_id="999999", cluster="devcluster", site="devcluster"))
    r = slurmc_jobs(cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("999999 "))
    assert line.split()[1] == "UNKNOWN"
    r = slurmc_jobs("show", "999999", cwd=tmp_path, env=env)
    assert "final state is unknown" in r.stdout


# ---- submitting safely -----------------------------------------------------------------------


def _slurmctld_pid() -> int:
    pid = int((DEVCLUSTER_DIR / "run" / "slurmctld.pid").read_text().strip())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "slurmctld"
    return pid


@pytest.fixture
def fast_timeout_conf(cluster, tmp_path: Path) -> Path:
    """A copy of the cluster's slurm.conf with MessageTimeout=2: clients give up after 2 s."""
    lines = [
        ln for ln in Path(cluster).read_text().splitlines()
        if not ln.strip().lower().startswith("messagetimeout")
    ]  # fmt: skip
    conf = tmp_path / "fast" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text("\n".join([*lines, "MessageTimeout=2", ""]))
    return conf


@pytest.mark.parametrize(
    "resume_after", [3.0, 8.5], ids=["resumed-before-look-up", "look-up-times-out"]
)
def test_submit_while_slurmctld_is_stopped_creates_exactly_one_job(
    cluster, image, tmp_path, env, fast_timeout_conf, resume_after
):
    """sbatch times out (2 s) while slurmctld is stopped; the request is still queued in
    the controller's socket and creates the job once it resumes. slurmc must find that
    job by its tag and report it, never submit a second one."""
    env = {**env, "SLURM_CONF": str(fast_timeout_conf), "SLURMC_SUBMIT_RETRY_DELAYS": "2,3,5,10"}
    pid = _slurmctld_pid()
    timer = threading.Timer(resume_after, os.kill, (pid, signal.SIGCONT))
    started = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        timer.start()
        r = run(str(image), "--", "echo", "once", cwd=tmp_path, env=env, timeout=120)
    finally:
        os.kill(pid, signal.SIGCONT)
        timer.cancel()
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    job = id_from(r.stdout)
    assert "Socket timed out" in r.stderr
    assert f"job {job} carries tag" in r.stderr
    if resume_after > 5:
        assert "did not answer" in r.stderr
    rec = record(env, job)
    assert rec["recovered_by_tag"] is True and rec["submit_attempts"] == 1
    assert tagged_jobs(rec["tag"]) == [job]  # exactly one job carries the tag
    assert wait_job(job)["JobState"] == "COMPLETED"
    print(f"\nSIGSTOP test (resume after {resume_after} s): slurmc took {took:.1f} s")


def test_a_submit_that_never_reached_slurm_is_submitted_again_once(cluster, image, tmp_path, env):
    """The first sbatch fails as if timed out, without reaching the controller: the tag
    look-up finds nothing, so slurmc submits again; exactly one job exists."""
    real = shutil.which("sbatch")
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    marker = tmp_path / "failed-once"
    fake = fake_dir / "sbatch"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{marker}" ]; then\n'
        f'  touch "{marker}"; cat >/dev/null\n'
        '  echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv '
        'operation" >&2\n'
        "  exit 1\n"
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    fake.chmod(0o755)
    env = {**env, "PATH": f"{fake_dir}:{os.environ['PATH']}", "SLURMC_SUBMIT_RETRY_DELAYS": "1,1"}
    r = run(str(image), "--", "echo", "again", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    job = id_from(r.stdout)
    assert "no job carries tag" in r.stderr and "submitting again (attempt 2)" in r.stderr
    rec = record(env, job)
    assert rec["submit_attempts"] == 2 and rec["recovered_by_tag"] is False
    assert tagged_jobs(rec["tag"]) == [job]
    assert wait_job(job)["JobState"] == "COMPLETED"


def test_an_invalid_partition_is_not_retried(cluster, image, tmp_path, env):
    env = {**env, "SLURMC_SUBMIT_RETRY_DELAYS": "30"}
    started = time.monotonic()
    r = run("--sbatch-arg=--partition=nope", str(image), "--", "true", cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("slurmc: error: ") and r.stderr.count("\n") == 1
    assert "invalid partition" in r.stderr.lower()
    assert time.monotonic() - started < 20  # no 30 s retry round


def test_wait_into_a_closed_pipe_still_exits_with_the_jobs_status(cluster, image, tmp_path, env):
    exe = shutil.which("slurmc")
    assert exe
    cmd = f"'{exe}' run --site devcluster --wait '{image}' -- sh -c 'seq 1 5000; exit 4'"
    r = subprocess.run(
        ["bash", "-c", f"{cmd} | head -1; exit ${{PIPESTATUS[0]}}"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 4, r.stderr
    assert r.stdout == "1\n"
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
