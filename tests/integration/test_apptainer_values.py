"""Values that Apptainer's and SingularityCE's own grammar would change, under the real Slurm.

Each test names what it runs: ``real_apptainer`` is Debian's Apptainer 1.4.5
(scripts/install-apptainer), ``singularityce_double`` is tests/doubles imitating
SingularityCE (the lumi site, kind ``singularity``), ``charliecloud`` the real ch-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import RealApptainer, output_of, slurmc, submitted_id, wait_job

pytestmark = pytest.mark.cluster

#: --env values that pflag's stringToString, CSV, or the action script's shell would change
HOSTILE_ENV = {
    "DQ": 'say "hi"',
    "DQ_END": 'ends in a quote"',
    "ONLY_DQ": '"',
    "COMMAS": "a,b,,c",
    "EQUALS": "k=v=w",
    "CSV_ALL": '"x",y=z,"w"',
    "DOLLAR": "$HOME and ${USER}",
    "BACKTICKS": "`id -u` $(id -u)",
    "BACKSLASH_END": "ends in a backslash\\",
    "NEWLINES": "line 1\nline 2\n",
    "CRLF": "a\r\nb",
    "SINGLE": "it's",
    "EMPTY": "",
    "SPACES": "  padded  ",
    "UNICODE": "grüße ✓",
}
READ_ENV = "import json, os, sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"
PROJECT = {"PROJECT_ID": "project_465000001"}


def jobs_named(name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", name, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def _site(tool: str, real: RealApptainer, tmp_path: Path) -> tuple[str, dict[str, str]]:
    if tool == "real_apptainer":
        return str(real.site("lumi", tmp_path)), {**real.env, **PROJECT}
    return "lumi", dict(PROJECT)


@pytest.fixture(params=["real_apptainer", "singularityce_double"])
def tool(request) -> str:
    if request.param == "singularityce_double":
        request.getfixturevalue("doubles")
    return request.param


def test_env_values_arrive_exactly(
    cluster, images, tool, real_apptainer, lumi_host_paths, tmp_path
):
    """--env values holding ", ',', '=', '$', backticks, a trailing backslash, newlines..."""
    site, env = _site(tool, real_apptainer, tmp_path)
    env_args = [f"--env={k}={v}" for k, v in HOSTILE_ENV.items()]
    r = slurmc(
        "run",
        "--site",
        site,
        *env_args,
        str(images.lumi_sif),
        "--",
        "python",
        "-c",
        READ_ENV,
        *HOSTILE_ENV,
        cwd=tmp_path,
        env=env,
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen == HOSTILE_ENV


def test_non_utf8_words_are_refused_before_submitting(
    cluster, images, tool, real_apptainer, lumi_host_paths, tmp_path
):
    """Both real tools turn bytes that are not UTF-8 into U+FFFD: refused, nothing submitted."""
    site, env = _site(tool, real_apptainer, tmp_path)
    name = os.fsdecode(b"\xff.txt")
    job_name = f"nonutf8-{uuid.uuid4().hex[:10]}"  # the cluster is shared: look for ours only
    cases = [
        (str(images.lumi_sif), "--", "cat", name),
        (f"--env=V={name}", str(images.lumi_sif), "--", "true"),
        (f"--bind={tmp_path}/{name}:/mnt", str(images.lumi_sif), "--", "true"),
    ]
    for args in cases:
        r = slurmc("run", "--site", site, "-J", job_name, *args, cwd=tmp_path, env=env)
        assert r.returncode != 0 and r.stdout == "", args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "not UTF-8" in lines[0] and "\\xff" in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    assert jobs_named(job_name) == []


def test_non_utf8_file_name_arrives_through_charliecloud(cluster, images, tmp_path):
    """charliecloud carries such bytes: the batch submission no longer crashes (proc.py)."""
    raw = b"caf\xe9 \xff.txt"
    (tmp_path / os.fsdecode(raw)).write_text("latin-1 named file\n")
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        str(images.plain_sqfs),
        "--",
        "cat",
        os.fsdecode(raw),
        cwd=tmp_path,
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert "latin-1 named file" in text


@pytest.mark.parametrize("path", ['dq"x dir', "caret^x", 'both^"and space'])
def test_binds_that_b_cannot_carry_go_as_mount(
    cluster, images, tool, real_apptainer, lumi_host_paths, tmp_path, path
):
    """'^' (both) and '"' (SingularityCE's CSV -B) in a bind path: rendered as --mount."""
    data = tmp_path / path
    data.mkdir()
    (data / "f").write_text("through the bind\n")
    site, env = _site(tool, real_apptainer, tmp_path)
    r = slurmc(
        "run",
        "--site",
        site,
        "--bind",
        f"{data}:/mnt:ro",
        str(images.lumi_sif),
        "--",
        "cat",
        "/mnt/f",
        cwd=tmp_path,
        env=env,
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert "through the bind" in text


@pytest.mark.parametrize(
    ("sig", "code", "word"), [("TERM", 143, "Terminated"), ("KILL", 137, "Killed")]
)
def test_a_signal_is_the_job_status_with_wait(
    cluster, images, tool, real_apptainer, lumi_host_paths, tmp_path, sig, code, word
):
    """The runtime dies by the command's signal: srun says so, --wait exits 128+N."""
    site, env = _site(tool, real_apptainer, tmp_path)
    r = slurmc(
        "run",
        "--site",
        site,
        "--wait",
        str(images.plain_sif),
        "--",
        "sh",
        "-c",
        f"kill -{sig} $$",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == code, r.stderr
    assert f"task 0: {word}" in r.stdout + r.stderr


def test_a_command_missing_from_the_image_is_255(
    cluster, images, tool, real_apptainer, lumi_host_paths, tmp_path
):
    """Without slurmc's inner wrapper (no conda, no --env) the runtime looks the command up."""
    site, env = _site(tool, real_apptainer, tmp_path)
    r = slurmc(
        "run",
        "--site",
        site,
        "--wait",
        "--no-conda",
        str(images.plain_sif),
        "--",
        "nosuchcmd",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 255, r.stderr
    assert '"nosuchcmd": executable file not found in $PATH' in r.stdout + r.stderr
