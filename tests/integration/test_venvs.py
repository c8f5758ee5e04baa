"""slurmc venv create with real containers, and jobs that use the venv under the real Slurm.

A venv is built inside the lumi test image (its fake Miniconda activated by
$WITH_CONDA, Debian's python3.11 with ensurepip), from a wheel made here and
installed with ``pip --no-index`` (no network inside a job or a build), packed with
mksquashfs, then mounted at /user-software by a job: through the Singularity
double (``-B venv.sqsh:/user-software:image-src=/``) on the lumi site, and as an
unpacked directory through ch-run on the devcluster site. The same through the real
Apptainer: test_real_apptainer.py.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shlex
import tempfile
import uuid
import zipfile
from pathlib import Path

import pytest

from .conftest import (
    IMAGE_PY_FULL,
    IMAGE_PYVER,
    double_calls,
    output_of,
    slurmc,
    submitted_id,
    wait_job,
)

pytestmark = pytest.mark.cluster

PKG, VERSION = "venvprobe", "0.1.0"
#: Runs in the job: what it imports, from where, with which environments active.
USE = (
    "import json, os, sys, venvprobe, slurmc_probe; "
    "print(json.dumps({'greeting': venvprobe.GREETING, 'file': venvprobe.__file__, "
    "'conda_pkg': slurmc_probe.__version__, 'prefix': sys.prefix, "
    "'venv': os.environ.get('VIRTUAL_ENV'), 'conda': os.environ.get('CONDA_DEFAULT_ENV')}))"
)


def make_wheel(directory: Path, name: str = PKG, version: str = VERSION) -> Path:
    """A pure-Python wheel, written by hand (what `pip wheel` would make of a tiny package)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\nGREETING = "hello from {name}"\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: slurmc-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    # quotes, spaces and a dollar sign: the path reaches pip inside the container unchanged
    d = tmp_path / "wheels it's $HOME"
    make_wheel(d)
    return d


@pytest.fixture
def data_env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(tmp_path / "data")}


def store_of(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "slurmc" / "venvs"


def build_leftovers(name: str) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f".{name}.build.*"))


def test_lumi_venv_is_imported_by_a_job_through_the_singularityce_double(
    cluster, images, doubles, lumi_host_paths, wheels, data_env, tmp_path
):
    name = f"probe-{uuid.uuid4().hex[:6]}"
    r = slurmc(
        "venv",
        "create",
        name,
        "--site",
        "lumi",
        "--image",
        str(images.lumi_sif),
        "--pip-arg=--no-index",
        f"--pip-arg=--find-links={wheels}",
        "--",
        f"{PKG}=={VERSION}",
        cwd=tmp_path,
        env=data_env,
    )
    assert r.returncode == 0, r.stderr
    assert f"Created venv {name}" in r.stdout
    store = store_of(data_env)
    sqsh = store / f"{name}.sqsh"
    assert sorted(os.listdir(store)) == [f"{name}.json", f"{name}.sqsh"]
    assert sqsh.read_bytes()[:4] == b"hsqs"
    meta = json.loads((store / f"{name}.json").read_text())
    assert meta["base_image"]["path"] == str(images.lumi_sif)
    assert meta["conda"] == "with_conda" and meta["python"] == IMAGE_PY_FULL
    assert {"name": PKG, "version": VERSION} in meta["installed"]
    assert build_leftovers(name) == []
    # built inside the container: the Singularity double ran, with the venv dir at /user-software
    build = [c for c in double_calls(doubles, "singularity") if c["argv"][:1] == ["exec"]][-1]
    assert build["argv"][1] == "-B" and build["argv"][2].endswith(":/user-software")

    listed = json.loads(slurmc("venv", "ls", "--json", cwd=tmp_path, env=data_env).stdout)
    assert [v["name"] for v in listed] == [name] and listed[0]["size"] == sqsh.stat().st_size

    r = slurmc(
        "run",
        "--site",
        "lumi",
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
        env={**data_env, "PROJECT_ID": "project_465000001"},
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen["greeting"] == f"hello from {PKG}"
    assert seen["file"].startswith(f"/user-software/lib/python{IMAGE_PYVER}/site-packages/")
    assert seen["conda_pkg"] == "1.2.3" and seen["conda"] == "pytorch"  # conda env still there
    assert seen["venv"] == "/user-software" and seen["prefix"] == "/user-software"
    job_exec = [c for c in double_calls(doubles, "singularity") if c["argv"][:1] == ["exec"]][-1]
    binds = ",".join(
        job_exec["argv"][i + 1] for i, a in enumerate(job_exec["argv"]) if a == "-B"
    ).split(",")
    assert f"{sqsh}:/user-software:image-src=/" in binds


@pytest.fixture
def cache(tmp_path: Path, images) -> Path:
    root = tmp_path / "cache"
    (root / "slurmc").mkdir(parents=True)
    os.symlink(images.lumi_sqfs, root / "slurmc" / "test:lumi.sqfs")
    return root


def test_devcluster_venv_is_imported_by_a_job_through_charliecloud(
    cluster, cache, wheels, data_env, tmp_path
):
    name = f"probe-{uuid.uuid4().hex[:6]}"
    req = tmp_path / "requirements.txt"
    req.write_text(f"--no-index\n--find-links {shlex.quote(str(wheels))}\n{PKG}=={VERSION}\n")
    r = slurmc(
        "venv",
        "create",
        name,
        "--site",
        "devcluster",
        "--cache-dir",
        str(cache),
        "--image",
        "slurmc/test:lumi",
        "-r",
        "requirements.txt",
        cwd=tmp_path,
        env=data_env,
    )
    assert r.returncode == 0, r.stderr
    store = store_of(data_env)
    meta = json.loads((store / f"{name}.json").read_text())
    assert meta["runtime"] == "charliecloud" and meta["conda"] == "with_conda"
    assert meta["requirements_text"] == req.read_text()
    assert {"name": PKG, "version": VERSION} in meta["installed"]

    r = slurmc(
        "run",
        "--site",
        "devcluster",
        "--cache-dir",
        str(cache),
        "--venv",
        name,
        "slurmc/test:lumi",
        "--",
        "python",
        "-c",
        USE,
        cwd=tmp_path,
        env=data_env,
    )
    job = submitted_id(r)
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen["greeting"] == f"hello from {PKG}" and seen["conda"] == "pytorch"
    assert seen["file"].startswith("/user-software/") and seen["venv"] == "/user-software"
    # ch-run cannot mount a SquashFS file as a bind: the job bound the unpacked copy
    unpacked = list((store / ".unpacked").iterdir())
    assert len(unpacked) == 1 and (unpacked[0] / "bin" / "activate").is_file()
    assert name in unpacked[0].name

    r = slurmc("venv", "rm", name, cwd=tmp_path, env=data_env)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(store)) == [".unpacked"]
    assert list((store / ".unpacked").iterdir()) == []


def test_venv_on_an_image_without_conda(images, wheels, data_env, tmp_path):
    name = f"plain-{uuid.uuid4().hex[:6]}"
    r = slurmc(
        "venv",
        "create",
        name,
        "--site",
        "devcluster",
        "--image",
        str(images.plain_sqfs),
        "--pip-arg=--no-index",
        f"--pip-arg=--find-links={wheels}",
        PKG,
        cwd=tmp_path,
        env=data_env,
    )
    assert r.returncode == 0, r.stderr
    meta = json.loads((store_of(data_env) / f"{name}.json").read_text())
    assert meta["conda"] == "none" and meta["with_conda"] is None
    assert {"name": PKG, "version": VERSION} in meta["installed"]


def test_failing_pip_leaves_nothing_behind(images, data_env, tmp_path):
    name = f"bad-{uuid.uuid4().hex[:6]}"
    r = slurmc(
        "venv",
        "create",
        name,
        "--site",
        "devcluster",
        "--image",
        str(images.lumi_sqfs),
        "--pip-arg=--no-index",
        "--",
        "nosuchpkg-slurmc",
        cwd=tmp_path,
        env=data_env,
    )
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr  # the progress note and the one-line error
    assert lines[-1].startswith("slurmc: error: ") and "nosuchpkg-slurmc" in lines[-1]
    assert "nothing was kept" in lines[-1]
    store = store_of(data_env)
    assert not store.exists() or os.listdir(store) == []
    assert build_leftovers(name) == []
    r = slurmc("venv", "ls", cwd=tmp_path, env=data_env)
    assert r.returncode == 0 and "no venvs" in r.stdout


# ---- the podman site, with real Podman (issue 13) --------------------------------------

USE_VENV = (
    "import json, os, venvprobe; "
    "print(json.dumps({'greeting': venvprobe.GREETING, 'file': venvprobe.__file__, "
    "'venv': os.environ.get('VIRTUAL_ENV'), 'cwd': os.getcwd()}))"
)


def test_podman_venv_is_built_and_imported_by_a_job(
    cluster, podman, oci_image, wheels, data_env, tmp_path
):
    """Built with `podman run` on the login node, used by a job whose step runs
    `podman run -v VENV:/user-software:ro` under the real Slurm."""
    name = f"pod-{uuid.uuid4().hex[:6]}"
    r = slurmc(
        *("venv", "create", name, "--site", "podman", "--image", str(oci_image)),
        *("-B", str(wheels)),  # podman shares no host directory unless told
        *("--pip-arg=--no-index", f"--pip-arg=--find-links={wheels}", PKG),
        cwd=tmp_path,
        env=data_env,
    )
    assert r.returncode == 0, r.stderr
    meta = json.loads((store_of(data_env) / f"{name}.json").read_text())
    assert meta["runtime"] == "podman" and {"name": PKG, "version": VERSION} in meta["installed"]
    r = slurmc(
        *("run", "--site", "podman", "--partition", "small", "--venv", name, str(oci_image)),
        *("--", "python3", "-c", USE_VENV),
        cwd=tmp_path,
        env=data_env,
    )
    fields = wait_job(submitted_id(r), timeout=180)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen["greeting"] == f"hello from {PKG}" and seen["venv"] == "/user-software"
    assert seen["file"].startswith("/user-software/") and seen["cwd"] == str(tmp_path)
