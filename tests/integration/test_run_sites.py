"""The lumi, determined and nvidia-pyxis sites' scripts, really run under Slurm.

Every test here runs a DOUBLE (tests/doubles): SingularityCE (LUMI's runtime), Enroot
and Pyxis cannot be installed here, so their doubles accept the real tools' grammar and
execute through Charliecloud: sbatch -> srun -> double -> ch-run -> container. The same
lumi and determined jobs run through the real Apptainer in test_real_apptainer.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import double_calls, output_of, slurmc, submitted_id, wait_job
from .test_run_devcluster import PROBE

pytestmark = pytest.mark.cluster
DET_REF = "determinedai/environments:rocm-5.0-pytorch-1.10-tf-2.7-rocm-2b7e2a1"


def test_lumi_job_through_the_singularityce_double(
    cluster, images, doubles, lumi_host_paths, tmp_path
):
    r = slurmc(
        "run",
        "--site",
        "lumi",
        "--partition",
        "small-g",
        "--gpus-per-node",
        "2",
        "--time",
        "30:00",
        str(images.lumi_sif),
        "--",
        "python",
        "-m",
        "slurmc_probe",
        cwd=tmp_path,
        env={"PROJECT_ID": "project_465000001"},
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert "slurmc_probe 1.2.3 ok" in text and "pytorch" in text  # $WITH_CONDA ran inside
    assert fields["Account"] == "project_465000001" and fields["Partition"] == "small-g"
    calls = [c for c in double_calls(doubles, "singularity") if c["argv"][:1] == ["exec"]]
    argv = calls[-1]["argv"]
    assert argv[:2] == ["exec", "--rocm"] and "-B" in argv


def test_determined_job_from_singularity_image_root_double(cluster, images, doubles, tmp_path):
    root = tmp_path / "singularity_image_root"
    (root / "determinedai").mkdir(parents=True)
    os.symlink(images.plain_sif, root / DET_REF)  # as manage-singularity-cache names it
    r = slurmc(
        "run",
        "--site",
        "determined",
        "--partition",
        "small",
        DET_REF,
        "--",
        "python3",
        "-c",
        PROBE,
        "arg one",
        cwd=tmp_path,
        env={"SINGULARITY_IMAGE_ROOT": str(root)},
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text)
    assert seen["argv"] == ["arg one"] and "slurmc test image" in seen["os"]
    call = [c for c in double_calls(doubles, "singularity") if c["argv"][:1] == ["exec"]][-1]
    assert str(root / DET_REF) in call["argv"]


def test_nvidia_pyxis_job_through_srun_container_image_double(cluster, images, doubles, tmp_path):
    root = tmp_path / "enroot"
    (root / "slurmc").mkdir(parents=True)
    os.symlink(images.plain_sqfs, root / "slurmc" / "test:plain.sqsh")
    r = slurmc(
        "run",
        "--site",
        "nvidia-pyxis",
        "--partition",
        "small-g",
        "--gpus-per-node",
        "1",
        "--env",
        "MY_VAR=v,w",
        "slurmc/test:plain",
        "--",
        "python3",
        "-c",
        PROBE,
        cwd=tmp_path,
        env={"SLURMC_ENROOT_CACHE": str(root)},
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text)
    assert "slurmc test image" in seen["os"] and seen["env"]["MY_VAR"] == "v,w"
    call = double_calls(doubles, "srun")[-1]
    assert any(
        a.startswith("--container-image=") and a.endswith("test:plain.sqsh") for a in call["argv"]
    )


def test_wrong_runtime_flag_fails_like_the_real_tool_double(
    cluster, images, doubles, tmp_path: Path
):
    """The double rejects what the real tool rejects: a site override with a bad flag fails."""
    site = tmp_path / "bad.toml"
    site.write_text('[runtime]\nkind = "singularity"\n[container]\nbinds = ["/nonexistent-src"]\n')
    r = slurmc(
        "run",
        "--site",
        str(site),
        "--interactive",
        str(images.plain_sif),
        "--",
        "true",
        cwd=tmp_path,
    )
    assert r.returncode != 0


@pytest.mark.parametrize("name", ["bt`touch PWNED-bt`", "dol$(touch PWNED-dol)", 'dq"x'])
def test_pyxis_hostile_working_directory_is_refused_before_any_job(
    cluster, images, doubles, tmp_path, name
):
    """Pyxis writes mounts into a file enroot sources with bash: from such a directory,
    --container-mounts="$PWD:$PWD" would run code on the compute node. One line, no job."""
    hostile = tmp_path / name
    hostile.mkdir()
    os.symlink(images.plain_sqfs, hostile / "img.sqsh")
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    r = slurmc(
        *("run", "--site", "nvidia-pyxis", "--partition", "small-g", "./img.sqsh"),
        *("--", "true"),
        cwd=hostile,
    )
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("slurmc: error: the working directory") and "Pyxis" in r.stderr
    assert "Submitted" not in r.stdout
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    assert set(after.split()) <= set(before.split())
    assert not list(tmp_path.rglob("PWNED*"))
