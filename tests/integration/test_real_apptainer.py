"""The REAL Apptainer (Debian unstable's 1.4.5, scripts/install-apptainer) under the real Slurm.

Every test here runs ``/usr/bin/apptainer``, never the double: the lumi and
determined sites with their runtime switched to the real tool (kind ``apptainer``),
venvs, ``inspect --exec``, ``slurmc shell`` and pulls from the registry on
127.0.0.1. What SingularityCE does differently stays with the double
(tests/doubles), whose tests say so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import IMAGE_PYVER, RealApptainer, output_of, slurmc, submitted_id, wait_job
from .test_cache_pull import pushed, registry  # noqa: F401  (session fixtures)
from .test_run_devcluster import PROBE
from .test_run_sites import DET_REF
from .test_shell import _wait_for
from .test_venvs import PKG, USE, VERSION, make_wheel, store_of

pytestmark = pytest.mark.cluster

PROJECT = {"PROJECT_ID": "project_465000001"}


def test_lumi_job_through_the_real_apptainer(
    cluster, images, real_apptainer: RealApptainer, lumi_host_paths, tmp_path
):
    site = real_apptainer.site("lumi", tmp_path)
    r = slurmc(
        "run",
        "--site",
        str(site),
        "--partition",
        "small-g",
        "--gpus-per-node",
        "2",
        str(images.lumi_sif),
        "--",
        "python",
        "-m",
        "slurmc_probe",
        cwd=tmp_path,
        env={**real_apptainer.env, **PROJECT},
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert "slurmc_probe 1.2.3 ok" in text and "pytorch" in text  # $WITH_CONDA ran inside


def test_determined_job_through_the_real_apptainer(
    cluster, images, real_apptainer: RealApptainer, tmp_path
):
    root = tmp_path / "singularity_image_root"
    (root / "determinedai").mkdir(parents=True)
    os.symlink(images.plain_sif, root / DET_REF)
    r = slurmc(
        "run",
        "--site",
        str(real_apptainer.site("determined", tmp_path)),
        "--partition",
        "small",
        DET_REF,
        "--",
        "python3",
        "-c",
        PROBE,
        "arg one",
        cwd=tmp_path,
        env={**real_apptainer.env, "SINGULARITY_IMAGE_ROOT": str(root)},
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen["argv"] == ["arg one"] and "slurmc test image" in seen["os"]


@pytest.mark.parametrize("data", ["data", "da^ta"])  # '^': the venv goes in by --mount
def test_venv_create_and_run_through_the_real_apptainer(
    cluster, images, real_apptainer: RealApptainer, lumi_host_paths, tmp_path, data
):
    wheels = tmp_path / "wheels it's $HOME"
    make_wheel(wheels)
    data_env = {"XDG_DATA_HOME": str(tmp_path / data)}
    site = str(real_apptainer.site("lumi", tmp_path))
    name = f"probe-{uuid.uuid4().hex[:6]}"
    r = slurmc(
        "venv",
        "create",
        name,
        "--site",
        site,
        "--image",
        str(images.lumi_sif),
        "--pip-arg=--no-index",
        f"--pip-arg=--find-links={wheels}",
        "--",
        f"{PKG}=={VERSION}",
        cwd=tmp_path,
        env={**real_apptainer.env, **data_env},
    )
    assert r.returncode == 0, r.stderr
    sqsh = store_of(data_env) / f"{name}.sqsh"
    assert sqsh.read_bytes()[:4] == b"hsqs"
    r = slurmc(
        "run",
        "--site",
        site,
        "--partition",
        "small",
        "--venv",
        name,
        str(images.lumi_sif),
        "--",
        "python",
        "-c",
        USE,
        cwd=tmp_path,
        env={**real_apptainer.env, **data_env, **PROJECT},
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen["greeting"] == f"hello from {PKG}"
    assert seen["file"].startswith(f"/user-software/lib/python{IMAGE_PYVER}/site-packages/")
    assert seen["conda_pkg"] == "1.2.3" and seen["conda"] == "pytorch"
    assert seen["venv"] == "/user-software"
    script = slurmc(
        "run",
        "--site",
        site,
        "--dry-run",
        "--venv",
        name,
        str(images.lumi_sif),
        "--",
        "true",
        cwd=tmp_path,
        env={**data_env, **PROJECT},
    ).stdout
    assert ("--mount 'type=bind," in script) is ("^" in data), script


def test_inspect_exec_through_the_real_apptainer(images, real_apptainer: RealApptainer, tmp_path):
    r = slurmc(
        "inspect",
        "--json",
        str(images.lumi_sif),
        "--exec",
        "--site",
        str(real_apptainer.site("lumi", tmp_path)),
        cwd=tmp_path,
        env=real_apptainer.env,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["argv"][:2] == [real_apptainer.exe, "exec"]
    assert [(p["name"], p["version"]) for p in out["pip_packages"]] == [("slurmc_probe", "1.2.3")]
    assert out["static_comparison"]["only_static"] == []


def test_pull_from_the_registry_with_the_real_apptainer(
    cluster,
    registry,  # noqa: F811
    pushed,  # noqa: F811
    real_apptainer: RealApptainer,
    tmp_path,
):
    """Real `apptainer pull DEST docker://REF` (trusting the CA via SSL_CERT_FILE), then a job."""
    root = tmp_path / "singularity_image_root"
    ref = pushed["lumi"]
    site = str(real_apptainer.site("determined", tmp_path))
    env = {**real_apptainer.env, "SSL_CERT_FILE": registry.ca_bundle}
    r = slurmc(
        "cache", "pull", "--site", site, "--cache-dir", str(root), ref, cwd=tmp_path, env=env
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path == root / ref and path.read_bytes()[32:41] == b"SIF_MAGIC"
    r = slurmc(
        "run",
        "--site",
        site,
        "--partition",
        "small",
        "--cache-dir",
        str(root),
        ref,
        "--",
        "bash",
        "-c",
        'echo "with_conda=$WITH_CONDA"; grep PRETTY /etc/os-release',
        cwd=tmp_path,
        env=real_apptainer.env,
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert "slurmc test image" in text
    # the image's environment (OCI config Env) came through the real conversion
    assert "with_conda=source /opt/miniconda3/bin/activate pytorch" in text


def test_shell_through_the_real_apptainer(
    cluster, images, real_apptainer: RealApptainer, lumi_host_paths, tmp_path
):
    session = f"slurmc-{uuid.uuid4().hex[:8]}"
    exe = shutil.which("slurmc")
    assert exe and shutil.which("tmux")
    site = real_apptainer.site("lumi", tmp_path)
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in {
            "PATH": os.environ["PATH"],
            "SLURM_CONF": cluster,
            "USER": "root",
            **real_apptainer.env,
            **PROJECT,
        }.items()
    )
    cmd = (
        f"cd {shlex.quote(str(tmp_path))} && env {env} {exe} shell --site {shlex.quote(str(site))} "
        f"-p small-g --gpus-per-node 1 {images.lumi_sif}; echo SHELL-EXITED-$?; sleep 60"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", cmd], check=True
    )
    try:
        _wait_for(session, r"(bash-\d|Apptainer>)")
        subprocess.run(
            [
                "tmux",
                "send-keys",
                "-t",
                session,
                'echo "job=$SLURM_JOB_ID env=$CONDA_DEFAULT_ENV tool=${APPTAINER_NAME:+real} '
                'pty=$([ -t 0 ] && echo yes)"',
                "Enter",
            ],
            check=True,
        )
        m = _wait_for(session, r"job=(\d+) env=(\w*) tool=(\w*) pty=(\w*)")
        job, conda_env, tool, pty = m.groups()
        assert (conda_env, tool, pty) == ("pytorch", "real", "yes")
        subprocess.run(["tmux", "send-keys", "-t", session, "exit 3", "Enter"], check=True)
        _wait_for(session, r"SHELL-EXITED-3")
        assert wait_job(job, timeout=30)["JobState"] in ("COMPLETED", "FAILED")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_test_images_carry_99_base_like_images_the_real_tools_build(
    images, real_apptainer: RealApptainer, tmp_path
):
    """Oracle: the real Apptainer sets --env variables only right after sourcing
    /.singularity.d/env/99-base.sh; they arrive, so the test images are built like real ones."""
    for image in (images.lumi_sif, images.plain_sif):
        r = subprocess.run(
            [
                real_apptainer.exe,
                "exec",
                "--env",
                "SLURMC_SEEN=yes",
                str(image),
                "sh",
                "-c",
                'echo "seen=$SLURMC_SEEN ps1=$PS1"',
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, **real_apptainer.env},
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == "seen=yes ps1=Apptainer> \n", (image, r.stdout)
