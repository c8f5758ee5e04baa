"""`slurmc inspect` on real test images: the same packages read statically from every
format (SquashFS, SIF, OCI archive, OCI layout, directory) and through a real runtime
(`--exec`: ch-run, the Apptainer/Singularity double, and srun on the local cluster)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import IMAGE_PY_FULL, IMAGE_RELEASE, Images, slurmc

pytestmark = pytest.mark.runtime

WITH_CONDA = "source /opt/miniconda3/bin/activate pytorch"
PIP = [("slurmc_probe", "1.2.3")]
CONDA = [("numpy", "1.26.4"), ("python", IMAGE_PY_FULL), ("pytorch", "2.3.1")]


def run(*argv: str | Path) -> None:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    assert r.returncode == 0, f"{argv}: {r.stderr}"


@pytest.fixture(scope="session")
def oci_images(images: Images, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The lumi test image's root file system as an OCI layout and an OCI archive
    (umoci new/unpack/repack, then skopeo copy oci: -> oci-archive:)."""
    d = tmp_path_factory.mktemp("oci")
    layout, bundle = d / "layout", d / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:latest")
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:latest", bundle)
    shutil.copytree(
        images.lumi_sqfs.parent / "rootfs", bundle / "rootfs", symlinks=True, dirs_exist_ok=True
    )
    run("umoci", "repack", "--image", f"{layout}:latest", bundle)
    run("umoci", "config", "--image", f"{layout}:latest", "--config.env", "OCI_ONLY=1")
    archive = d / "image.oci.tar"
    run("skopeo", "copy", f"oci:{layout}:latest", f"oci-archive:{archive}")
    return {"layout": layout, "archive": archive}


def packages(out: dict) -> tuple[list, list]:
    env = next(e for e in out["environments"] if e["name"] == "pytorch")
    assert env["activated_by_with_conda"]
    return (
        [(p["name"], p["version"]) for p in env["pip_packages"]],
        [(p["name"], p["version"]) for p in env["conda_packages"]],
    )


def inspect_json(*args: str | Path, cwd: Path, **kw) -> dict:
    r = slurmc("inspect", "--json", *map(str, args), cwd=cwd, **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_format_reads_the_same(images: Images, oci_images, tmp_path: Path):
    rootfs = images.lumi_sqfs.parent / "rootfs"
    found = {}
    for name, path in [
        ("sqfs", images.lumi_sqfs),
        ("sif", images.lumi_sif),
        ("oci-archive", oci_images["archive"]),
        ("oci-layout", oci_images["layout"]),
        ("directory", rootfs),
    ]:
        out = inspect_json(path, cwd=tmp_path)
        assert out["os"]["ID"] == "debian" and out["os"]["VERSION_ID"] == IMAGE_RELEASE
        assert out["with_conda"]["value"] == WITH_CONDA
        assert packages(out) == (PIP, CONDA), name
        found[name] = out
    assert found["sif"]["sif"]["descriptors"][0]["part_type"] == "*System"
    assert found["sif"]["squashfs"]["offset"] == found["sif"]["sif"]["descriptors"][0]["offset"]
    assert "OCI_ONLY=1" in found["oci-archive"]["oci"]["env"]
    assert found["oci-layout"]["format"] == "oci-layout"


def test_plain_image_has_no_conda(images: Images, tmp_path: Path):
    for path in (images.plain_sqfs, images.plain_sif):
        out = inspect_json(path, cwd=tmp_path)
        assert out["with_conda"] is None
        assert [e["kind"] for e in out["environments"]] == ["system"]


def test_diff_between_flavors(images: Images, tmp_path: Path):
    out = inspect_json(images.plain_sif, "--diff", images.lumi_sif, cwd=tmp_path)
    assert sorted(c["name"] for c in out["added"]) == ["numpy", "python", "pytorch", "slurmc_probe"]
    assert out["removed"] == [] and out["changed"] == []


def test_exec_through_ch_run_lists_what_static_reading_found(images: Images, tmp_path: Path):
    static = packages(inspect_json(images.lumi_sqfs, cwd=tmp_path))
    out = inspect_json(images.lumi_sqfs, "--exec", "--site", "devcluster", cwd=tmp_path)
    assert out["argv"][0] == "ch-run"
    assert out["conda_env"] == "pytorch"
    assert [(p["name"], p["version"]) for p in out["pip_packages"]] == static[0] == PIP
    assert out["static_comparison"] == {
        "environment": "/opt/miniconda3/envs/pytorch",
        "only_static": [],
        "only_exec": [],
        "version_differs": [],
    }
    plain = inspect_json(images.plain_sqfs, "--exec", "--site", "devcluster", cwd=tmp_path)
    assert plain["conda_env"] is None and plain["pip_packages"] == []


def test_exec_through_the_singularity_double(images: Images, doubles: Path, tmp_path: Path):
    out = inspect_json(images.lumi_sif, "--exec", "--site", "lumi", cwd=tmp_path)
    assert out["argv"][:2] == ["singularity", "exec"]
    assert [(p["name"], p["version"]) for p in out["pip_packages"]] == PIP
    assert out["static_comparison"]["only_static"] == []


@pytest.mark.cluster
def test_exec_on_a_compute_node(images: Images, cluster: str, tmp_path: Path):
    out = inspect_json(
        images.lumi_sqfs,
        "--exec",
        "--on-node",
        "--site",
        "devcluster",
        "-p",
        "small",
        "-t",
        "5",
        cwd=tmp_path,
    )
    assert out["argv"][:3] == ["srun", "--nodes=1", "--ntasks=1"]
    assert [(p["name"], p["version"]) for p in out["pip_packages"]] == PIP


def test_truncated_sif_is_one_line(images: Images, tmp_path: Path):
    cut = tmp_path / "cut.sif"
    with open(images.lumi_sif, "rb") as f:
        cut.write_bytes(f.read(1 << 20))
    r = slurmc("inspect", str(cut), cwd=tmp_path)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "truncated SIF file" in r.stderr


@pytest.mark.cluster
@pytest.mark.parametrize("on_node", [False, True])
def test_exec_through_real_podman(
    images: Images, cluster: str, podman: Path, oci_image: Path, tmp_path: Path, on_node: bool
):
    """`inspect --exec` of an OCI archive with the real Podman, here and under srun."""
    where = ["--on-node", "-p", "small", "-t", "5"] if on_node else []
    out = inspect_json(oci_image, "--exec", "--site", "podman", *where, cwd=tmp_path)
    argv = out["argv"]
    assert argv[argv.index("podman") : argv.index("podman") + 3] == ["podman", "run", "--rm"]
    assert (argv[:3] == ["srun", "--nodes=1", "--ntasks=1"]) is on_node
    assert out["conda_env"] is None and out["pip_packages"] == []  # python3 ran inside
    comparison = out["static_comparison"]
    assert comparison["only_static"] == comparison["only_exec"] == []
