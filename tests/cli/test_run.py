"""The CLI through Typer's CliRunner: exit codes and one-line messages."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slurmc.cli.app import app

runner = CliRunner()


@pytest.fixture
def env(clean_env, monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith(("SLURMC_", "SLURM_", "PROJECT_ID")):
            monkeypatch.delenv(k, raising=False)
    for k, v in clean_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img.sif").write_bytes(b"")
    Path(clean_env["SLURM_CONF"]).touch()  # sbatch is faked; slurmc checks the file exists
    return clean_env


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line_error(result, text: str) -> None:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("slurmc: error: ") and text in lines[0]
    assert "Traceback" not in result.output


def test_dry_run_prints_the_script_and_submits_nothing(env, fp):
    r = invoke(
        "run",
        "--site",
        "lumi",
        "-A",
        "p",
        "--partition",
        "small-g",
        "--gpus-per-node",
        "2",
        "--time",
        "30:00",
        "--dry-run",
        "./img.sif",
        "--",
        "python",
        "my-script.py",
        "--lr",
        "3e-4",
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("#!/bin/bash\n")
    assert "srun singularity exec --rocm" in r.stdout
    assert "slurmc python my-script.py --lr 3e-4" in r.stdout
    assert r.stderr.startswith("note: GPU binding skipped: a small-g allocation is shared")
    assert fp.call_count(["sbatch", fp.any()]) == 0


def test_submit_prints_job_id_and_output_path(env, fp, tmp_path):
    fp.register(["sbatch", "--parsable"], stdout="4242\n")
    r = invoke("run", "--site", "devcluster", "./img.sif", "--", "hostname")
    assert r.exit_code == 0, r.output
    assert "Submitted job 4242 (site devcluster)" in r.output
    assert f"Output: {tmp_path}/slurmc-hostname-4242.out" in r.output
    fp.register(["sbatch", "--parsable"], stdout="4243;dev\n")
    r = invoke("run", "--site", "devcluster", "--parsable", "./img.sif", "--", "hostname")
    assert r.output == "4243\n"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("run", "--site", "devcluster", "Not/A:ref!", "--", "x"), "invalid image reference"),
        (("run", "--site", "devcluster", "./nope.sif", "--", "x"), "does not exist"),
        (("run", "--site", "nosuch", "./img.sif", "--", "x"), "unknown site 'nosuch'"),
        (("run", "./img.sif", "--", "x"), "no site given"),
        (("run", "--site", "devcluster", "--time", "soon", "./img.sif", "--", "x"), "--time"),
        (
            (
                "run",
                "--site",
                "devcluster",
                "--job-name",
                "a\n#SBATCH -p x",
                "./img.sif",
                "--",
                "x",
            ),
            "control character",
        ),
        (
            ("run", "--site", "devcluster", "--comment", "a\n#SBATCH -p x", "./img.sif", "--", "x"),
            "control character",
        ),
        (("run", "--site", "devcluster", "./img.sif"), "no command given"),
        (("run", "--site", "lumi", "./img.sif", "--", "x"), "needs an account"),
        (
            ("run", "--site", "devcluster", "--cache-dir", "c", "ubuntu:22.04", "--", "x"),
            "cannot reach registry registry-1.docker.io:443",
        ),
        (("site", "show", "nosuch"), "unknown site"),
    ],
)
def test_bad_input_is_one_line_and_submits_nothing(env, fp, args, text):
    fp.allow_unregistered(False)
    result = invoke(*args)
    one_line_error(result, text)
    assert fp.call_count(["sbatch", fp.any()]) == 0


def test_invalid_site_file(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[runtime]\nkind = "docker"\n')
    one_line_error(invoke("site", "check", str(bad)), "key 'runtime.kind'")
    one_line_error(invoke("run", "--site", str(bad), "./img.sif", "--", "x"), "runtime.kind")
    good = tmp_path / "good.toml"
    good.write_text('[runtime]\nkind = "podman"\n')
    assert invoke("site", "check", str(good)).exit_code == 0


def test_site_list_and_show(env):
    r = invoke("site", "list")
    assert r.exit_code == 0 and "lumi" in r.output and "nvidia-pyxis" in r.output
    r = invoke("site", "show", "lumi")
    assert r.exit_code == 0 and "small-g: 8 x amd GPU, 56 cores" in r.output


def test_sbatch_failure_is_one_line(env, fp):
    fp.register(
        ["sbatch", "--parsable"],
        returncode=1,
        stderr="sbatch: error: Batch job submission failed: Invalid account\n",
    )
    one_line_error(invoke("run", "--site", "devcluster", "./img.sif", "--", "x"), "Invalid account")


def test_installed_console_script_smoke():
    exe = shutil.which("slurmc")
    assert exe, "the slurmc console script is not installed"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("slurmc ")
    r = subprocess.run(
        [exe, "run", "--site", "nosuch", "x.sif", "--", "x"],
        capture_output=True,
        text=True,
        cwd=Path.home(),
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_site_list_and_show_as_json(clean_env, tmp_path):
    """`site list --json` and `site show --json`: the same facts as the text, as data."""
    import json

    env = {**clean_env, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    bad = tmp_path / "cfg" / "slurmc" / "sites" / "broken.toml"
    bad.parent.mkdir(parents=True)
    bad.write_text("name = 3\n")
    r = CliRunner().invoke(app, ["site", "list", "--json"], env=env)
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert {"lumi", "devcluster", "nvidia-pyxis", "determined", "podman"} <= set(rows)
    assert rows["lumi"]["file"].endswith("site-configs/lumi.toml")
    assert rows["broken"]["description"] is None and "name" in rows["broken"]["error"]
    text = CliRunner().invoke(app, ["site", "list"], env=env).stdout
    assert f"INVALID: {rows['broken']['error']}" in text
    r = CliRunner().invoke(app, ["site", "show", "lumi", "--json"], env=env)
    assert r.exit_code == 0, r.output
    lumi = json.loads(r.stdout)
    assert r.stdout.startswith('{\n  "name": "lumi"')  # the one indentation: 2
    assert lumi["runtime"] == "singularity" and lumi["account_env"] == "PROJECT_ID"
    assert lumi["partitions"]["standard-g"]["gpu_vendor"] == "amd"
    assert "/appl" in lumi["binds"]


# ---- everything after IMAGE is the command, options included (issue 9, point 6)
# As with srun, `apptainer exec` and `docker run`: slurmc's own options come before
# IMAGE; the words after it reach the process in the container as typed.


def dry_run(*after_image: str, before: tuple[str, ...] = ()):
    args = ["run", "--site", "lumi", "-A", "p", "-p", "small-g", *before, "--dry-run", "./img.sif"]
    return CliRunner().invoke(app, [*args, *after_image])


def command_line(script: str) -> list[str]:
    """The words after ``slurmc`` on the launch line (what bash -c passes on as "$@")."""
    line = next(ln for ln in script.splitlines() if 'exec "$@"\' slurmc' in ln)
    return shlex.split(line.split("' slurmc ", 1)[1])


@pytest.mark.parametrize(
    "words",
    [
        ["python", "train.py", "-t", "10", "--lr", "3e-4"],
        ["python3", "-c", "print(1)"],
        ["ls", "-la", "/"],
        ["python", "train.py", "--lr", "3e-4"],
        ["python", "train.py", "--help"],
        ["python", "train.py", "--dry-run", "--site", "x", "-p", "evil", "--time=1"],
        ["env", "--", "a"],
    ],
    ids=lambda w: " ".join(w),
)
@pytest.mark.parametrize("separator", [[], ["--"]], ids=["no --", "with --"])
def test_words_after_image_are_the_command(env, words, separator):
    r = dry_run(*separator, *words)
    assert r.exit_code == 0, r.output
    assert command_line(r.stdout) == words
    directives = [ln for ln in r.stdout.splitlines() if ln.startswith("#SBATCH")]
    # nothing after IMAGE became a directive: no --time=10 or partition evil
    assert "#SBATCH --time=10" not in directives and "#SBATCH --partition=evil" not in directives
    assert "#SBATCH --partition=small-g" in directives
    assert "Usage:" not in r.stdout  # --help after IMAGE is the command's, not slurmc's


def test_a_later_double_dash_is_the_commands_own(env):
    r = dry_run("--", "a", "--", "b")
    assert r.exit_code == 0, r.output
    assert command_line(r.stdout) == ["a", "--", "b"]


def test_options_before_image_still_work(env):
    r = dry_run("python", "x.py", before=("--time", "5:00", "-J", "named"))
    assert r.exit_code == 0, r.output
    assert "#SBATCH --time=5:00" in r.stdout and "#SBATCH --job-name=named" in r.stdout


@pytest.mark.parametrize("word", ["--dry-run", "-t", "--time=10", "-p"])
def test_an_option_right_after_image_is_refused_not_submitted(env, fp, word):
    """`slurmc run IMAGE --dry-run -- cmd`: a command cannot start with '-'; say where
    slurmc's options go instead of submitting a job that runs '--dry-run'."""
    r = CliRunner().invoke(
        app, ["run", "--site", "lumi", "-A", "p", "./img.sif", word, "--", "cmd"]
    )
    one_line_error(r, "slurmc's own options go before IMAGE")
    assert fp.call_count(["sbatch", fp.any()]) == 0  # nothing submitted


def test_help_before_image_is_slurmcs(env):
    r = CliRunner().invoke(app, ["run", "--help"])
    assert r.exit_code == 0 and "IMAGE [--] COMMAND" in " ".join(r.stdout.split())


def test_console_script_takes_the_words_after_image(env, tmp_path):
    exe = Path(sys.executable).with_name("slurmc")  # beside this interpreter (env sets PATH)
    assert exe.is_file(), "the slurmc console script is not installed"
    argv = [str(exe), "run", "--site", "lumi", "-A", "p", "--dry-run", "./img.sif"]
    words = ["python", "train.py", "-t", "10", "--lr", "3e-4", "it's $HOME"]
    r = subprocess.run(
        [*argv, *words], capture_output=True, text=True, env=os.environ, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert command_line(r.stdout) == words
    assert "--time=10" not in r.stdout


# ---- small traps (issue 9, point 9)

TAIL = ["./img.sif", "true"]


@pytest.mark.parametrize("command", ["run", "shell"])
@pytest.mark.parametrize("flag", ["--gpus", "--gpu", "--gpus=2"])
def test_gpus_says_which_option_to_use(env, fp, command, flag):
    args = [flag] if "=" in flag else [flag, "2"]
    tail = ["./img.sif", "true"] if command == "run" else ["./img.sif"]
    r = CliRunner().invoke(app, [command, "--site", "devcluster", *args, *tail])
    one_line_error(r, "--gpus-per-node 2")
    assert "--sbatch-arg=--gpus=2" in r.output
    assert fp.call_count(["sbatch", fp.any()]) == 0 and fp.call_count(["salloc", fp.any()]) == 0


def test_gpus_on_a_partition_without_gpus_is_refused(env, fp):
    r = CliRunner().invoke(
        app,
        ["run", "--site", "devcluster", "-p", "small", "--gpus-per-node", "2", "./img.sif", "true"],
    )
    one_line_error(r, "partition small of site devcluster has no GPUs; use one of small-g")
    assert fp.call_count(["sbatch", fp.any()]) == 0


def test_gpus_on_the_default_cpu_partition_is_refused(env):
    r = CliRunner().invoke(
        app,
        [
            "run",
            "--site",
            "lumi",
            "-A",
            "p",
            "--gpus-per-node",
            "1",
            "--dry-run",
            "./img.sif",
            "true",
        ],
    )
    one_line_error(r, "has no GPUs; use one of dev-g, small-g, standard-g")


def test_gpus_on_a_partition_the_site_does_not_list_are_taken_as_given(env):
    r = CliRunner().invoke(
        app,
        ["run", "--site", "devcluster", "-p", "other", "--gpus-per-node", "2", "--dry-run", *TAIL],
    )
    assert r.exit_code == 0, r.output
    assert "#SBATCH --gpus-per-node=2" in r.stdout


@pytest.mark.parametrize(
    ("argv", "hint"),
    [(["site", "lis"], "'list'"), (["cach", "ls"], "'cache'"), (["jobs", "shw", "1"], "'show'")],
)
def test_a_mistyped_command_gets_one_suggestion(env, argv, hint):
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2
    assert r.output.count("Did you mean") == 1, r.output
    assert f"Did you mean {hint}?" in r.output
