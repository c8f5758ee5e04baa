"""--sbatch-arg against the real sbatch 22.05: abbreviations resolve (or are ambiguous)
as slurmc's table says, and the retry tag stays in the job's comment whatever is passed."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from slurmc.errors import ValidationError
from slurmc.grammar.sbatch_options import parse

from .conftest import slurmc

pytestmark = pytest.mark.cluster

ARGS = [
    "--com=v1",
    "--comm=v2",
    "--comme=v3",
    "--commen=v4",
    "--comment=v5",
    "--co=v6",
    "--excl",
    "--exclusiv",
    "--ntasks-per=1",
    "--tasks-per=1",
    "--cluster=x",
    "--clust=x",
    "--hol",
    "--parti=small",
    "-H",
    "-Hv",
]


def _sbatch(arg: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sbatch", "--hold", "--parsable", arg, "--wrap=true"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _job(job_id: str) -> dict[str, str]:
    """Comment (which may hold spaces) and OverSubscribe, from squeue."""
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-O", "OverSubscribe:|,Comment:500"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.rstrip("\n")
    over, _, comment = out.partition("|")
    return {"OverSubscribe": over.strip(), "Comment": comment.strip()}


@pytest.mark.parametrize("arg", ARGS)
def test_the_option_table_agrees_with_real_sbatch(cluster, arg):
    r = _sbatch(arg)
    job_id = r.stdout.strip().split(";")[0]
    try:
        try:
            ours = parse(arg)
        except ValidationError as exc:
            assert "ambiguous" in str(exc)
            assert r.returncode != 0 and "ambiguous" in r.stderr, r.stderr
            return
        if r.returncode != 0:  # sbatch read it but the controller refused it (--cluster=x)
            assert "ambiguous" not in r.stderr and "unrecognized" not in r.stderr, r.stderr
            return
        fields = _job(job_id)
        for flag, value in ours:
            if flag == "--comment":
                assert fields["Comment"] == value
            if flag == "--exclusive":
                assert fields["OverSubscribe"] == "NO"
    finally:
        if job_id.isdigit():
            subprocess.run(["scancel", job_id], check=False)


@pytest.mark.parametrize(
    "extra",
    [
        ["--sbatch-arg=--comm=mine"],
        ["--sbatch-arg=--comment=one", "--sbatch-arg=--commen=mine"],
        ["--sbatch-arg=-Jmine"],
    ],
)
def test_the_retry_tag_stays_in_the_jobs_comment(cluster, images, tmp_path: Path, extra):
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        "--sbatch-arg=--hold",
        *extra,
        str(images.plain_sqfs),
        "--",
        "true",
        cwd=tmp_path,
        env={"XDG_STATE_HOME": str(tmp_path / "state")},
    )
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.splitlines()[0].split()[2]
    try:
        comment = _job(job_id)["Comment"]
        assert "slurmc:" in comment
        if any("comm" in e for e in extra):
            assert "mine" in comment
    finally:
        subprocess.run(["scancel", job_id], check=False)


@pytest.mark.parametrize("arg", ["--hold --comment=two", "--co=x", "--hold=--comment=x"])
def test_an_argument_that_would_drop_the_tag_submits_nothing(cluster, images, tmp_path, arg):
    name = f"slurmc-droptag-{uuid.uuid4().hex[:12]}"  # other test runs share this cluster
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        f"--job-name={name}",
        f"--sbatch-arg={arg}",
        str(images.plain_sqfs),
        "--",
        "true",
        cwd=tmp_path,
        env={"XDG_STATE_HOME": str(tmp_path / "state")},
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--sbatch-arg" in r.stderr
    jobs = subprocess.run(
        ["squeue", "-h", "-a", "-t", "all", "-n", name, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert jobs.strip() == ""
