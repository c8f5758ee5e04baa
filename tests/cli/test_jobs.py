"""`slurmc run` records and --wait, and `slurmc jobs ...`, through CliRunner with Slurm faked.

The real thing runs in tests/integration/test_jobs.py.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import typer
from typer.testing import CliRunner

from slurmc.cli import jobs as cli_jobs
from slurmc.cli.app import app
from slurmc.usecases import records

#: `slurmc jobs` on an app of its own, so that the global one stays as cli.py builds it
jobs_app = typer.Typer()
cli_jobs.register(jobs_app)
runner = CliRunner()

SQUEUE_FIELDS = "JobID:|,ArrayJobID:|,State:|,exit_code:|,Reason:|,Comment:|"
SOCKET_TIMED_OUT = (
    "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n"
)
TAGS_ARGV = ["squeue", "-h", "-a", "--me", "-t", "all", "-O", "ArrayJobID:|,Comment:|"]


def squeue_argv(*ids: str) -> list[str]:
    return ["squeue", "-h", "-a", "-t", "all", "-j", ",".join(ids), "-O", SQUEUE_FIELDS]


@pytest.fixture
def env(clean_env, monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith(("SLURMC_", "SLURM_", "PROJECT_ID")):
            monkeypatch.delenv(k, raising=False)
    for k, v in clean_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=testc\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img.sif").write_bytes(b"SIF image bytes")
    return {**clean_env, "XDG_STATE_HOME": str(tmp_path / "state"), "SLURM_CONF": str(conf)}


def invoke(*args: str):
    return runner.invoke(jobs_app if args[0] == "jobs" else app, list(args))


def one_line_error(result, text: str) -> None:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("slurmc: error: ") and text in lines[0]


def record_of(env, job_id: str) -> dict:
    found = records.find(env, job_id)
    assert len(found) == 1
    return found[0][1]


# ---- the record ------------------------------------------------------------------------------


def test_every_submission_is_recorded_with_its_tag_image_and_digest(env, fp, tmp_path):
    fp.register(["sbatch", "--parsable"], stdout="4242\n")
    r = invoke("run", "--site", "devcluster", "./img.sif", "--", "python", "-c", "print('x y')")
    assert r.exit_code == 0, r.output
    rec = record_of(env, "4242")
    assert rec["cluster"] == "testc" and rec["site"] == "devcluster"
    assert rec["command"] == ["python", "-c", "print('x y')"]
    assert rec["cwd"] == str(tmp_path)
    assert rec["output"] == f"{tmp_path}/slurmc-python-4242.out"
    assert rec["tag"].startswith("slurmc:") and rec["comment"] == rec["tag"]
    assert f"#SBATCH --comment={rec['tag']}" in rec["script"]
    image = rec["image"]
    assert image["realpath"] == str(tmp_path / "img.sif") and image["kind"] == "file"
    assert image["sha256"] == hashlib.sha256(b"SIF image bytes").hexdigest()
    assert rec["submit_attempts"] == 1 and rec["recovered_by_tag"] is False
    assert rec["submitted_at"][:4].isdigit()


def test_the_users_comment_stays_visible_next_to_the_tag(env, fp):
    fp.register(["sbatch", "--parsable"], stdout="1\n")
    fp.register(["sbatch", "--parsable"], stdout="2\n")
    assert (
        invoke(
            "run", "--site", "devcluster", "--comment", "lr sweep 3", "./img.sif", "--", "x"
        ).exit_code
        == 0
    )
    rec = record_of(env, "1")
    assert rec["comment"] == f"lr sweep 3 [{rec['tag']}]" and rec["user_comment"] == "lr sweep 3"
    assert f'#SBATCH --comment="lr sweep 3 [{rec["tag"]}]"' in rec["script"]
    # a --comment given through --sbatch-arg would override the tagged one: it is folded in
    r = invoke(
        "run", "--site", "devcluster", "--sbatch-arg=--comment=other", "./img.sif", "--", "x"
    )
    assert r.exit_code == 0, r.output
    rec = record_of(env, "2")
    assert rec["comment"] == f"other [{rec['tag']}]"
    assert rec["script"].count("--comment") == 1


def test_an_unwritable_record_is_a_warning_not_a_failure(env, fp, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    fp.register(["sbatch", "--parsable"], stdout="9\n")
    r = invoke("run", "--site", "devcluster", "./img.sif", "--", "x")
    assert r.exit_code == 0
    assert "Submitted job 9" in r.stdout
    assert "warning: could not write the job record" in r.stderr


def test_a_timed_out_submit_with_no_tagged_job_is_submitted_again(env, fp, monkeypatch):
    monkeypatch.setenv("SLURMC_SUBMIT_RETRY_DELAYS", "0,0")
    import slurmc.backends.base as base

    monkeypatch.setattr(base, "new_tag", lambda: "slurmc:00000000000000aa")
    tag = "slurmc:00000000000000aa"
    fp.register(["sbatch", "--parsable"], returncode=1, stderr=SOCKET_TIMED_OUT)
    fp.register(TAGS_ARGV, stdout="312|(null)|\n")  # Slurm answers: no job has the tag
    fp.register(["sbatch", "--parsable"], stdout="313\n")
    fp.register(TAGS_ARGV, stdout=f"313|{tag}|\n")  # checked once more afterwards
    r = invoke("run", "--site", "devcluster", "./img.sif", "--", "x")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Submitted job 313 ")
    assert fp.call_count(["sbatch", "--parsable"]) == 2
    assert "Socket timed out" in r.stderr and "submitting again (attempt 2)" in r.stderr
    assert record_of(env, "313")["submit_attempts"] == 2


def test_a_submit_found_by_its_tag(env, fp, monkeypatch):
    """The job exists after a time-out: its id comes from the tag, sbatch is called once."""
    monkeypatch.setenv("SLURMC_SUBMIT_RETRY_DELAYS", "0,0")
    import slurmc.backends.base as base

    monkeypatch.setattr(base, "new_tag", lambda: "slurmc:00000000000000aa")
    tag = "slurmc:00000000000000aa"
    fp.register(
        ["sbatch", "--parsable"],
        returncode=1,
        stderr=SOCKET_TIMED_OUT,
    )
    fp.register(
        TAGS_ARGV,
        returncode=1,
        stderr="slurm_load_jobs error: Socket timed out on send/recv operation\n",
    )
    fp.register(TAGS_ARGV, stdout=f"311|{tag}|\n312|(null)|\n")
    r = invoke("run", "--site", "devcluster", "./img.sif", "--", "x")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Submitted job 311 ")
    assert fp.call_count(["sbatch", "--parsable"]) == 1
    assert "did not answer" in r.stderr and "job 311 carries tag" in r.stderr
    rec = record_of(env, "311")
    assert rec["tag"] == tag and rec["recovered_by_tag"] is True


def test_an_error_that_created_no_job_is_one_line_and_not_retried(env, fp):
    fp.register(
        ["sbatch", "--parsable"],
        returncode=1,
        stderr="sbatch: error: Batch job submission failed: Invalid partition name specified\n",
    )
    fp.allow_unregistered(False)
    one_line_error(
        invoke("run", "--site", "devcluster", "./img.sif", "--", "x"), "Invalid partition"
    )
    assert fp.call_count(["sbatch", "--parsable"]) == 1


# ---- run --wait ------------------------------------------------------------------------------


def test_wait_streams_the_output_and_exits_with_the_jobs_status(env, fp, tmp_path):
    out = tmp_path / "slurmc-sh-77.out"

    def running(process):
        out.write_bytes(b"line 1\nline 2\n")

    fp.register(["sbatch", "--parsable"], stdout="77\n")
    fp.register(squeue_argv("77"), stdout="77|77|RUNNING|0|None|x|\n", callback=running)
    fp.register(squeue_argv("77"), stdout="77|77|FAILED|768|NonZeroExitCode|x|\n")
    r = invoke("run", "--site", "devcluster", "--wait", "./img.sif", "--", "sh", "-c", "exit 3")
    assert r.exit_code == 3, r.output
    assert r.stdout == "line 1\nline 2\n"  # stdout is the job's output alone
    assert "Submitted job 77" in r.stderr and f"Output: {out}" in r.stderr
    assert "job 77 is RUNNING" in r.stderr
    assert r.stderr.strip().endswith("job 77 failed with exit code 3")
    assert record_of(env, "77")["final"]["state"] == "FAILED"


@pytest.mark.parametrize(
    ("line", "code", "text"),
    [
        ("COMPLETED|0|None", 0, "job 78 completed"),
        ("CANCELLED|15|None", 143, "job 78 was cancelled"),
        ("TIMEOUT|15|TimeLimit", 124, "time limit"),
        ("NODE_FAIL|0|NodeDown", 75, "a node failed"),
    ],
)
def test_wait_says_how_the_job_ended(env, fp, tmp_path, line, code, text):
    (tmp_path / "slurmc-true-78.out").write_text("")
    fp.register(["sbatch", "--parsable"], stdout="78\n")
    fp.register(squeue_argv("78"), stdout=f"78|78|{line}|x|\n")
    r = invoke("run", "--site", "devcluster", "--wait", "./img.sif", "--", "true")
    assert r.exit_code == code, r.output
    assert text in r.stderr


def test_wait_when_the_job_is_forgotten_and_accounting_is_off(env, fp):
    fp.register(["sbatch", "--parsable"], stdout="79\n")
    fp.register(
        squeue_argv("79"), returncode=1, stderr="slurm_load_jobs error: Invalid job id specified\n"
    )
    fp.register(
        ["sacct", "-n", "-P", "-X", "-j", "79", "-o", "JobIDRaw,State,ExitCode"],
        returncode=1,
        stderr="Slurm accounting storage is disabled\n",
    )
    r = invoke("run", "--site", "devcluster", "--wait", "./img.sif", "--", "true")
    assert r.exit_code == 1
    assert "final state is unknown" in r.stderr and "Traceback" not in r.output


def test_wait_with_parsable_prints_the_id_first(env, fp, tmp_path):
    (tmp_path / "slurmc-true-80.out").write_text("hello\n")
    fp.register(["sbatch", "--parsable"], stdout="80\n")
    fp.register(squeue_argv("80"), stdout="80|80|COMPLETED|0|None|x|\n")
    r = invoke("run", "--site", "devcluster", "--wait", "--parsable", "./img.sif", "--", "true")
    assert r.exit_code == 0 and r.stdout == "80\nhello\n"


@pytest.mark.parametrize("extra", [["--interactive"], ["--dry-run"], ["--array", "1-3"]])
def test_wait_is_for_one_batch_job(env, fp, extra):
    fp.allow_unregistered(False)
    one_line_error(
        invoke("run", "--site", "devcluster", "--wait", *extra, "./img.sif", "--", "x"), "--wait"
    )


# ---- slurmc jobs -----------------------------------------------------------------------------


def submit(fp, job_id: str, *command: str) -> None:
    fp.register(["sbatch", "--parsable"], stdout=f"{job_id}\n")
    r = invoke("run", "--site", "devcluster", "./img.sif", "--", *(command or ("true",)))
    assert r.exit_code == 0, r.output


def test_list_asks_slurm_once_and_remembers_final_states(env, fp):
    submit(fp, "10", "echo", "a")
    submit(fp, "11", "echo", "b")
    fp.register(
        squeue_argv("11", "10"),
        stdout="10|10|FAILED|512|NonZeroExitCode|x|\n11|11|RUNNING|0|None|x|\n",
    )
    r = invoke("jobs")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["JOBID", "STATE", "EXIT", "SUBMITTED"]
    assert lines[1].split()[:3] == ["11", "RUNNING", "-"]
    assert lines[2].split()[:3] == ["10", "FAILED", "2"]
    assert "echo a" in lines[2]
    assert fp.call_count(squeue_argv("11", "10")) == 1
    # 10 has ended: only 11 is asked about now
    fp.register(squeue_argv("11"), stdout="11|11|COMPLETED|0|None|x|\n")
    r = invoke("jobs", "--json")
    rows = json.loads(r.stdout)
    assert [(x["job_id"], x["status"]["state"]) for x in rows] == [
        ("11", "COMPLETED"),
        ("10", "FAILED"),
    ]
    assert rows[1]["status"]["source"] == "record"
    assert rows[0]["image_sha256"] == hashlib.sha256(b"SIF image bytes").hexdigest()
    # now nothing needs asking
    fp.allow_unregistered(False)
    assert invoke("jobs").exit_code == 0


def test_list_falls_back_to_sacct_then_unknown(env, fp):
    submit(fp, "12")
    fp.register(
        squeue_argv("12"), returncode=1, stderr="slurm_load_jobs error: Invalid job id specified\n"
    )
    fp.register(
        ["sacct", "-n", "-P", "-X", "-j", "12", "-o", "JobIDRaw,State,ExitCode"],
        stdout="12|COMPLETED|0:0\n",
    )
    r = invoke("jobs")
    assert r.stdout.splitlines()[1].split()[:3] == ["12", "COMPLETED", "0"]


def test_list_when_slurm_does_not_answer(env, fp):
    submit(fp, "13")
    fp.register(
        squeue_argv("13"),
        returncode=1,
        stderr="slurm_load_jobs error: Unable to contact slurm controller\n",
    )
    r = invoke("jobs")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[1].split()[:2] == ["13", "?"]
    assert "could not ask Slurm" in r.stderr


def test_list_leaves_other_clusters_alone(env, fp):
    records.write(env, records.new_record(job_id="900", cluster="elsewhere", site="x"))
    fp.allow_unregistered(False)
    r = invoke("jobs")
    assert r.exit_code == 0 and "other-cluster" in r.stdout


def test_list_with_no_records(env):
    r = invoke("jobs")
    assert r.exit_code == 0 and "no jobs recorded yet" in r.stdout


def test_list_last_n(env, fp):
    for i in range(3):
        submit(fp, str(20 + i))
    fp.register(squeue_argv("22"), stdout="22|22|RUNNING|0|None|x|\n")
    r = invoke("jobs", "-n", "1")
    assert len(r.stdout.splitlines()) == 2
    one_line_error(invoke("jobs", "-n", "-1"), "--last")


def test_show_names_the_image_file_and_its_digest(env, fp, tmp_path):
    submit(fp, "30", "python", "train.py")
    fp.register(squeue_argv("30"), stdout="30|30|COMPLETED|0|None|x|\n")
    r = invoke("jobs", "show", "30")
    assert r.exit_code == 0, r.output
    digest = hashlib.sha256(b"SIF image bytes").hexdigest()
    assert f"file     {tmp_path}/img.sif" in r.stdout
    assert f"sha256   {digest}" in r.stdout
    assert "check    unchanged" in r.stdout
    assert "command    python train.py" in r.stdout
    assert "#SBATCH --comment=slurmc:" in r.stdout  # the script, as submitted
    r = invoke("jobs", "show", "30", "--json")
    data = json.loads(r.stdout)
    assert data["image"]["sha256"] == digest and data["image_check"]["result"] == "unchanged"
    assert data["status"]["state"] == "COMPLETED"


def test_show_computes_a_missing_digest_once_and_notices_a_changed_image(
    env, fp, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLURMC_DIGEST_SUBMIT_MAX", "1")  # as if the image were big
    submit(fp, "31")
    assert "sha256" not in record_of(env, "31")["image"]
    fp.register(squeue_argv("31"), stdout="31|31|RUNNING|0|None|x|\n")
    r = invoke("jobs", "show", "31", "--json")
    assert json.loads(r.stdout)["image"]["sha256"] == hashlib.sha256(b"SIF image bytes").hexdigest()
    assert record_of(env, "31")["image"]["sha256"]  # kept
    (tmp_path / "img.sif").write_bytes(b"rebuilt")
    fp.register(squeue_argv("31"), stdout="31|31|RUNNING|0|None|x|\n")
    r = invoke("jobs", "show", "31")
    assert "check    changed" in r.stdout


def test_show_does_not_attribute_a_changed_file(env, fp, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURMC_DIGEST_SUBMIT_MAX", "1")
    submit(fp, "32")
    (tmp_path / "img.sif").write_bytes(b"rebuilt after submission")
    fp.register(squeue_argv("32"), stdout="32|32|RUNNING|0|None|x|\n")
    r = invoke("jobs", "show", "32")
    assert "sha256   not computed" in r.stdout and "check    changed" in r.stdout


@pytest.mark.parametrize("command", ["show", "logs", "cancel"])
def test_bad_ids_are_one_line(env, command):
    one_line_error(invoke("jobs", command, "12;rm"), "not a job id")


@pytest.mark.parametrize("command", ["show", "logs"])
def test_unknown_ids_are_one_line(env, command):
    one_line_error(invoke("jobs", command, "404"), "no record of job 404")


def test_logs_prints_the_output_file(env, fp, tmp_path):
    submit(fp, "40", "echo")
    (tmp_path / "slurmc-echo-40.out").write_bytes(b"hello\n\xff bytes as they are\n")
    r = invoke("jobs", "logs", "40")
    assert r.exit_code == 0 and r.stdout_bytes == b"hello\n\xff bytes as they are\n"


def test_logs_of_a_job_that_wrote_nothing_yet(env, fp):
    submit(fp, "41", "echo")
    one_line_error(invoke("jobs", "logs", "41"), "--follow")


def test_logs_follow_until_the_job_ends(env, fp, tmp_path):
    submit(fp, "42", "echo")
    out = tmp_path / "slurmc-echo-42.out"

    def write(process):
        with out.open("ab") as f:
            f.write(b"more\n")

    out.write_bytes(b"start\n")
    fp.register(squeue_argv("42"), stdout="42|42|RUNNING|0|None|x|\n", callback=write)
    fp.register(squeue_argv("42"), stdout="42|42|COMPLETED|0|None|x|\n", callback=write)
    r = invoke("jobs", "logs", "42", "--follow")
    assert r.exit_code == 0, r.output
    assert r.stdout == "start\nmore\nmore\n"
    assert "job 42 completed" in r.stderr


def test_logs_follow_of_a_finished_job_just_prints(env, fp, tmp_path):
    submit(fp, "43", "echo")
    (tmp_path / "slurmc-echo-43.out").write_text("done\n")
    path = records.find(env, "43")[0][0]
    records.update(path, final={"state": "COMPLETED", "exit_code": 0, "signal": 0})
    fp.allow_unregistered(False)
    r = invoke("jobs", "logs", "43", "--follow")
    assert r.exit_code == 0 and r.stdout == "done\n"


def test_cancel_runs_scancel(env, fp):
    submit(fp, "50")
    fp.register(["scancel", "50"])
    r = invoke("jobs", "cancel", "50")
    assert r.exit_code == 0 and "Cancel requested for job 50" in r.stdout
    assert fp.call_count(["scancel", "50"]) == 1


def test_cancel_failure_is_one_line(env, fp):
    submit(fp, "51")
    fp.register(
        ["scancel", "51"],
        returncode=1,
        stderr="scancel: error: Kill job error on job id 51: Invalid job id specified\n",
    )
    one_line_error(invoke("jobs", "cancel", "51"), "Invalid job id")


def test_same_id_on_two_clusters_needs_cluster(env, fp):
    records.write(env, records.new_record(job_id="60", cluster="a", site="x", output="/dev/null"))
    records.write(env, records.new_record(job_id="60", cluster="b", site="x", output="/dev/null"))
    one_line_error(invoke("jobs", "logs", "60"), "--cluster")
    r = invoke("jobs", "logs", "60", "--cluster", "b")
    assert r.exit_code == 0, r.output


def test_loading_twice_registers_each_command_once():
    from slurmc.cli.app import load

    whole = load()
    assert load() is whole
    names = [g.name for g in whole.registered_groups] + [c.name for c in whole.registered_commands]
    assert sorted(names) == sorted(set(names))
    assert {"jobs", "venv", "cache", "site", "run", "inspect", "shell"} <= set(names)


def test_jobs_prune_removes_only_old_ended_records(tmp_path, monkeypatch):
    import json as _json
    import time as _time

    from typer.testing import CliRunner

    from slurmc.cli.app import app
    from slurmc.usecases import records as r

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    d = r.jobs_dir(env)
    d.mkdir(parents=True)
    now = _time.time()
    final = {"state": "COMPLETED", "exit_code": 0, "signal": None, "source": "t"}
    for job_id, age_days, end in [(1, 200, final), (2, 200, None), (3, 10, final)]:
        when = _time.strftime("%Y-%m-%dT%H:%M:%S+0000", _time.gmtime(now - age_days * 86400))
        rec = r.new_record(job_id=str(job_id), cluster="c", submitted_at=when, final=end)
        (d / f"{job_id}.c.json").write_text(_json.dumps(rec))
    dry = CliRunner().invoke(app, ["jobs", "prune", "--older-than", "90", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 1 record(s)" in dry.output and "kept 1 older" in dry.output
    assert len(list(d.iterdir())) == 3
    r_ = CliRunner().invoke(app, ["jobs", "prune", "--older-than", "90"])
    assert r_.exit_code == 0, r_.output
    assert sorted(p.name for p in d.iterdir()) == ["2.c.json", "3.c.json"]
    bad = CliRunner().invoke(app, ["jobs", "prune", "--older-than", "-1"])
    assert bad.exit_code != 0 and "negative" in bad.output
