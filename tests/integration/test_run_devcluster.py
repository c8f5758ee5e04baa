"""slurmc run against the real local Slurm, with Charliecloud as the runtime."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import output_of, slurmc, submitted_id, wait_job

pytestmark = pytest.mark.cluster

#: Runs inside the container: what it sees.
PROBE = (
    "import json, os, sys; "
    "print(json.dumps({'exe': sys.executable, 'argv': sys.argv[1:], "
    "'os': open('/etc/os-release').read(), "
    "'env': {k: os.environ.get(k) for k in ('ROCR_VISIBLE_DEVICES', 'CUDA_VISIBLE_DEVICES', "
    "'CONDA_DEFAULT_ENV', 'SLURM_JOB_ID', 'MY_VAR')}}))"
)


@pytest.fixture
def cache(tmp_path: Path, images) -> Path:
    """A cache root holding the test images under their references (devcluster layout)."""
    root = tmp_path / "cache"
    (root / "slurmc").mkdir(parents=True)
    os.symlink(images.lumi_sqfs, root / "slurmc" / "test:lumi.sqfs")
    os.symlink(images.plain_sqfs, root / "slurmc" / "test:plain.sqfs")
    return root


def run_job(*args: str, cwd: Path) -> tuple[dict[str, str], str, object]:
    r = slurmc("run", "--site", "devcluster", *args, cwd=cwd)
    job = submitted_id(r)
    fields = wait_job(job)
    out = output_of(r)
    assert out.parent == cwd and out.name.endswith(f"-{job}.out")
    return fields, out.read_text(), r


def test_gpu_job_runs_in_the_container_with_conda_and_gpus(cluster, cache, tmp_path):
    fields, text, _ = run_job(
        "--partition",
        "small-g",
        "--gpus-per-node",
        "2",
        "--time",
        "5:00",
        "--cache-dir",
        str(cache),
        "--env",
        "MY_VAR=a b,c",
        "slurmc/test:lumi",
        "--",
        "python",
        "-c",
        PROBE,
        "x y",
        "$HOME",
        cwd=tmp_path,
    )
    assert fields["JobState"] == "COMPLETED", (fields, text)
    seen = json.loads(text)
    assert "slurmc test image" in seen["os"]  # inside the image, not on the host
    assert seen["env"]["ROCR_VISIBLE_DEVICES"] == "0,1"  # the job's two GPUs
    assert seen["env"]["CONDA_DEFAULT_ENV"] == "pytorch"  # $WITH_CONDA ran inside
    assert seen["exe"].startswith("/opt/miniconda3/envs/pytorch/")
    assert seen["argv"] == ["x y", "$HOME"]
    assert seen["env"]["MY_VAR"] == "a b,c"


def test_image_without_with_conda_runs_without_activation(cluster, cache, tmp_path):
    fields, text, _ = run_job(
        "--cache-dir", str(cache), "slurmc/test:plain", "--", "python3", "-c", PROBE, cwd=tmp_path
    )
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text)
    assert seen["env"]["CONDA_DEFAULT_ENV"] is None
    assert seen["env"]["ROCR_VISIBLE_DEVICES"] is None  # CPU partition: no GPUs


def test_failing_command_fails_the_job_with_its_status(cluster, cache, tmp_path):
    fields, _, _ = run_job(
        "--cache-dir",
        str(cache),
        "slurmc/test:plain",
        "--",
        "sh",
        "-c",
        "echo about to fail; exit 3",
        cwd=tmp_path,
    )
    assert fields["JobState"] == "FAILED" and fields["ExitCode"] == "3:0"


def test_interactive_runs_under_salloc_and_returns_the_step_status(cluster, cache, tmp_path):
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        "--interactive",
        "--partition",
        "small-g",
        "--gpus-per-node",
        "1",
        "--cache-dir",
        str(cache),
        "slurmc/test:plain",
        "--",
        "sh",
        "-c",
        'echo "in job $SLURM_JOB_ID gpus=$ROCR_VISIBLE_DEVICES"; exit 7',
        cwd=tmp_path,
    )
    assert r.returncode == 7, r.stderr
    assert "in job " in r.stdout and "gpus=0" in r.stdout
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        "--interactive",
        "--cache-dir",
        str(cache),
        "slurmc/test:plain",
        "--",
        "true",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("field", ["--job-name", "--comment"])
def test_directive_injection_is_refused_and_no_job_is_created(cluster, cache, tmp_path, field):
    marker = f"inject-{uuid.uuid4().hex[:12]}"
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        field,
        f"{marker}\n#SBATCH --partition=small-g",
        "--cache-dir",
        str(cache),
        "slurmc/test:plain",
        "--",
        "true",
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "control character" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    # no job at all carries the marker, in its name or comment (other jobs may run meanwhile)
    listed = subprocess.run(
        ["squeue", "-h", "-t", "all", "-O", "JobID:|,Name:|,Comment:|"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert marker not in listed


def test_hostile_job_name_and_comment_reach_slurm_unchanged(cluster, cache, tmp_path):
    name = 'a "b" #c $d \\e'
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        "--job-name",
        name,
        "--comment",
        "x #y 'z'",
        "--output",
        "out-%j.txt",
        "--sbatch-arg=--hold",
        "--cache-dir",
        str(cache),
        "slurmc/test:plain",
        "--",
        "true",
        cwd=tmp_path,
    )
    job = submitted_id(r)
    import subprocess

    show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    subprocess.run(["scancel", job], check=True)
    assert f"JobName={name}\n" in show
    assert "Comment=x #y 'z'" in show


@pytest.mark.parametrize(
    ("flavor", "flag", "activates"),
    [
        ("lumi", None, True),
        ("plain", None, False),
        ("plain", "--conda", True),
        ("lumi", "--no-conda", False),
    ],
)
def test_auto_conda_follows_what_the_image_defines(images, tmp_path, flavor, flag, activates):
    image = images.lumi_sqfs if flavor == "lumi" else images.plain_sqfs
    args = [
        "run",
        "--site",
        "devcluster",
        "--dry-run",
        *([flag] if flag else []),
        str(image),
        "--",
        "python",
        "x.py",
    ]
    r = slurmc(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    last = r.stdout.rstrip().splitlines()[-1].strip()
    assert last == (
        "bash -c '$WITH_CONDA && exec \"$@\"' slurmc python x.py" if activates else "python x.py"
    )


def test_squashfs_without_ch_environment_runs(cluster, images, tmp_path):
    """A SquashFS made with mksquashfs from a root file system is a valid Charliecloud
    image; ch-run --set-env fails on it (no /ch/environment), so it is not passed."""
    bare = tmp_path / "bare.sqfs"
    rootfs = images.plain_sqfs.parent / "rootfs"
    subprocess.run(
        ["mksquashfs", str(rootfs), str(bare), "-noappend", "-quiet", "-all-root", "-e", "ch"],
        check=True,
        capture_output=True,
    )
    shown = subprocess.run(["ch-run", "--set-env", str(bare), "--", "true"], capture_output=True)
    assert shown.returncode != 0  # what the script would run with --set-env
    r = slurmc(
        *("run", "--site", "devcluster", "--env", "MY_VAR=x y", str(bare)),
        *("--", "sh", "-c", 'echo "ok $MY_VAR"'),
        cwd=tmp_path,
    )
    fields = wait_job(submitted_id(r))
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert text.strip().splitlines()[-1] == "ok x y"
    dry = slurmc("run", "--site", "devcluster", "--dry-run", str(bare), "--", "true", cwd=tmp_path)
    assert dry.returncode == 0 and "ch-run" in dry.stdout and "--set-env" not in dry.stdout
