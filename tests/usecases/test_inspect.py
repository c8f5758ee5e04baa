"""slurmc.usecases.inspect: format detection, static reading, diff, and the --exec plumbing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from sif_reference import SIF_IMAGES as FIXTURES

from slurmc.cli import inspect_view
from slurmc.errors import ConfigError, ImageNotFoundError, ValidationError
from slurmc.images import ImageFormatError
from slurmc.usecases import inspect as core
from slurmc.usecases import inspect_exec
from tests.images.test_sif import SIGNED

WITH_CONDA = "source /opt/miniconda3/bin/activate pytorch"
CONDA_REC = {
    "name": "numpy",
    "version": "1.26.4",
    "build": "py311_0",
    "channel": "https://repo.anaconda.com/pkgs/main/linux-64",
}


def make_rootfs(root: Path, numpy: str = "1.26.4", extra_pip: str | None = None) -> Path:
    env = root / "opt/miniconda3/envs/pytorch"
    files = {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
        ".singularity.d/env/90-environment.sh": f"export WITH_CONDA='{WITH_CONDA}'\n",
        "opt/miniconda3/conda-meta/history": "",
        f"{env.relative_to(root)}/conda-meta/numpy-{numpy}-py311_0.json": json.dumps(
            {**CONDA_REC, "version": numpy}
        ),
        f"{env.relative_to(root)}/lib/python3.11/site-packages/slurmc_probe-1.2.3.dist-info/"
        "METADATA": "Name: slurmc_probe\nVersion: 1.2.3\n",
    }
    if extra_pip:
        files[
            f"{env.relative_to(root)}/lib/python3.11/site-packages/{extra_pip}-1.0.dist-info/"
            "METADATA"
        ] = f"Name: {extra_pip}\nVersion: 1.0\n"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_text("")
    os.symlink("python3.11", root / "usr/bin/python3")
    return root


def mksquashfs(src: Path, dst: Path, *extra: str) -> Path:
    subprocess.run(
        [
            "mksquashfs",
            str(src),
            str(dst),
            "-noappend",
            "-all-root",
            "-no-xattrs",
            "-no-progress",
            "-quiet",
            *extra,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return dst


@pytest.fixture(scope="module")
def sqfs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("img")
    return mksquashfs(make_rootfs(d / "root"), d / "image.sqfs")


def test_detect_format(tmp_path, sqfs):
    assert core.detect_format(str(sqfs)) == "squashfs"
    assert core.detect_format(str(FIXTURES / "one-group.sif")) == "sif"
    assert core.detect_format(str(tmp_path)) == "directory"
    (tmp_path / "oci-layout").write_text("{}")
    (tmp_path / "index.json").write_text("{}")
    assert core.detect_format(str(tmp_path)) == "oci-layout"
    empty = tmp_path / "empty.sif"
    empty.write_bytes(b"")
    with pytest.raises(ImageFormatError, match="empty file"):
        core.detect_format(str(empty))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ImageFormatError, match="not an image slurmc can read"):
        core.detect_format(str(text))


@pytest.mark.parametrize("comp", ["gzip", "xz", "zstd", "lzo", "lz4"])
def test_static_reading_of_a_squashfs_image(tmp_path, comp):
    img = mksquashfs(make_rootfs(tmp_path / "root"), tmp_path / "i.sqfs", "-comp", comp)
    insp = core.inspect_image(str(img))
    assert insp.format == "squashfs" and insp.squashfs["compression"] == comp
    c = insp.contents
    assert c.os_name == "Debian GNU/Linux 12 (bookworm)"
    assert c.with_conda == "source /opt/miniconda3/bin/activate pytorch"
    env = next(e for e in c.environments if e.name == "pytorch")
    assert env.activated_by_with_conda
    assert [(p.name, p.version) for p in env.conda_packages] == [("numpy", "1.26.4")]
    assert [(p.name, p.version) for p in env.pip_packages] == [("slurmc_probe", "1.2.3")]
    assert [p.path for p in c.pythons] == ["/usr/bin/python3", "/usr/bin/python3.11"]


def test_sif_with_the_squashfs_at_an_offset(tmp_path, sqfs):
    sif = tmp_path / "image.sif"
    packer = Path(__file__).parents[1] / "doubles" / "sif.py"
    subprocess.run(
        ["python3", str(packer), "pack", str(sqfs), str(sif)], check=True, stdout=subprocess.DEVNULL
    )
    insp = core.inspect_image(str(sif))
    assert insp.format == "sif" and insp.squashfs["offset"] == 32768
    assert insp.sif["descriptors"][0]["part_type"] == "*System"
    assert insp.packages() == core.inspect_image(str(sqfs)).packages()
    text = inspect_view.render(insp)
    assert "Squashfs *System" in text and "slurmc_probe" in text and "numpy" in text


def test_sif_without_a_squashfs_partition_reports_its_descriptors():
    insp = core.inspect_image(str(FIXTURES / "one-object-sbom.sif"))
    assert "no primary partition" in insp.sif["note"] and insp.contents.environments == []
    insp = core.inspect_image(str(FIXTURES / "one-object-generic-json.sif"))
    assert insp.sif["metadata_objects"] == [
        {"id": 1, "data_type": "JSON.Generic", "name": "data.json", "size": 2}
    ]
    signed = core.inspect_image(str(FIXTURES / SIGNED))
    assert signed.sif["signatures"] == [
        {
            "id": 3,
            "signs": "group 1",
            "hash_type": "SHA256",
            "fingerprint": "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84",
        }
    ]
    json.dumps(signed.to_dict())


def test_every_reference_image_renders_its_descriptors_and_their_types():
    """The table names each object's type and details, as siftool's list does (a
    cryptographic message's format and message type were missing)."""
    for path in sorted(FIXTURES.glob("*.sif")):
        insp = core.inspect_image(str(path))
        text = inspect_view.render(insp)
        for d in insp.sif["descriptors"]:
            assert d["data_type"] in text, (path.name, d)
    crypt = inspect_view.render(core.inspect_image(str(FIXTURES / "one-object-crypt-message.sif")))
    assert "Cryptographic Message  1      -     32176   4     -     OpenPGP/Clear Signature" in (
        crypt
    )


def test_truncated_and_garbage_squashfs_are_clear_errors(tmp_path, sqfs):
    from slurmc.images.squashfs import read_superblock

    data = sqfs.read_bytes()
    cut = tmp_path / "cut.sqfs"
    cut.write_bytes(data[: read_superblock(str(sqfs)).bytes_used - 1])
    with pytest.raises(ImageFormatError, match="truncated SquashFS"):
        core.inspect_image(str(cut))
    bad = tmp_path / "bad.sqfs"  # a good superblock over damaged tables
    bad.write_bytes(data[:96] + b"\xa5" * (len(data) - 96))
    with pytest.raises(ImageFormatError, match="cannot list the SquashFS") as exc:
        core.inspect_image(str(bad))
    assert "\n" not in str(exc.value)
    short = tmp_path / "short.sqfs"
    short.write_bytes(data[:50])
    with pytest.raises(ImageFormatError, match="superblock is cut short"):
        core.inspect_image(str(short))


def test_directory_image(tmp_path):
    insp = core.inspect_image(str(make_rootfs(tmp_path / "root")))
    assert insp.format == "directory"
    assert [e.name for e in insp.contents.environments] == ["base", "pytorch", "/usr"]


def test_diff(tmp_path, sqfs):
    other = mksquashfs(
        make_rootfs(tmp_path / "root", numpy="2.0.1", extra_pip="h5py"), tmp_path / "new.sqfs"
    )
    d = core.diff(core.inspect_image(str(sqfs), "old"), core.inspect_image(str(other), "new"))
    assert [(c.name, c.new) for c in d.added] == [("h5py", "1.0")]
    assert d.removed == []
    assert [(c.manager, c.name, c.old, c.new) for c in d.changed] == [
        ("conda", "numpy", "1.26.4 (py311_0)", "2.0.1 (py311_0)")
    ]
    back = core.diff(core.inspect_image(str(other), "new"), core.inspect_image(str(sqfs), "old"))
    assert [c.name for c in back.removed] == ["h5py"]
    text = inspect_view.render_diff(d)
    assert "+  /opt/miniconda3/envs/pytorch  pip" in text and "1.26.4 (py311_0)  ->" in text
    assert json.loads(json.dumps(d.to_dict()))["changed"][0]["name"] == "numpy"


# ------------------------------------------------------------------ locating images


def test_locate_paths_and_refs(tmp_path, sqfs):
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert core.locate(str(sqfs), None, (), env, "/").path == str(sqfs)
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        core.locate("./nope.sif", None, (), env, str(tmp_path))
    with pytest.raises(ImageNotFoundError, match="pull it first"):
        core.locate("library://alpine", None, (), env, str(tmp_path))
    cache = tmp_path / "cache"
    (cache / "library").mkdir(parents=True)
    (cache / "library" / "ubuntu:22.04.sqfs").write_bytes(sqfs.read_bytes())
    found = core.locate("ubuntu:22.04", "devcluster", (str(cache),), env, str(tmp_path))
    assert found.path == str(cache / "library" / "ubuntu:22.04.sqfs")
    assert found.site.name == "devcluster"
    found = core.locate(
        "ubuntu:22.04", "devcluster", (), {**env, "SLURMC_CACHE_DIR": str(cache)}, str(tmp_path)
    )
    assert found.path.endswith("ubuntu:22.04.sqfs")
    with pytest.raises(ImageNotFoundError, match=r"not in the cache.*pull it first"):
        core.locate("ubuntu:24.04", "devcluster", (str(cache),), env, str(tmp_path))
    with pytest.raises(ConfigError, match="no site given"):
        core.locate("ubuntu:22.04", None, (), {**env, "SLURM_CONF": "/nonexistent"}, str(tmp_path))


# ------------------------------------------------------------------ --exec


def test_exec_argv_per_runtime():
    cmd = inspect_exec.container_command()
    assert cmd[:2] == ["bash", "-c"] and "$WITH_CONDA" in cmd[2]
    assert inspect_exec.exec_argv("charliecloud", "ch-run", "/i.sqfs", "squashfs") == [
        "ch-run",
        "--set-env",
        "/i.sqfs",
        "--",
        *cmd,
    ]
    assert inspect_exec.exec_argv("singularity", "singularity", "/i.sif", "sif") == [
        "singularity",
        "exec",
        "/i.sif",
        *cmd,
    ]
    podman = inspect_exec.exec_argv("podman", "podman", "/i.tar", "oci-archive")
    assert podman[3:5] == ["--network=none", "oci-archive:/i.tar"]
    with pytest.raises(ValidationError, match="--on-node"):
        inspect_exec.exec_argv("enroot", "enroot", "/i.sqsh", "squashfs")
    assert inspect_exec.srun_argv(
        "enroot", "enroot", "/i.sqsh", "squashfs", ["--partition=gpu"]
    ) == [
        "srun",
        "--nodes=1",
        "--ntasks=1",
        "--partition=gpu",
        "--container-image=/i.sqsh",
        *cmd,
    ]
    assert inspect_exec.srun_argv("apptainer", "apptainer", "/i.sif", "sif", [])[3:5] == [
        "apptainer",
        "exec",
    ]


def test_the_exec_script_runs_in_bash_with_and_without_with_conda(tmp_path):
    """The container script itself, run by the host's bash against a fake activation."""
    activate = tmp_path / "activate"
    activate.write_text(
        f"export CONDA_DEFAULT_ENV=pytorch CONDA_PREFIX={tmp_path}\n"
        'pip() { echo \'[{"name": "x", "version": "1"}]\'; }\n'
    )
    cmd = inspect_exec.container_command()
    env = {"PATH": os.environ["PATH"], "WITH_CONDA": f"source {activate}"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    listing = inspect_exec.parse_exec_output(out, "img", cmd)
    assert (listing.conda_env, listing.pip_method) == ("pytorch", "pip")
    assert [(p.name, p.version) for p in listing.pip] == [("x", "1")]
    plain = subprocess.run(
        cmd, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True
    ).stdout
    assert inspect_exec.parse_exec_output(plain, "img", cmd).conda_env == ""
    bad = subprocess.run(
        cmd, env={"PATH": "/usr/bin:/bin", "WITH_CONDA": "false"}, capture_output=True, text=True
    )
    assert bad.returncode == 97 and "WITH_CONDA failed" in bad.stderr


def test_parse_exec_output():
    m = inspect_exec.MARK
    out = (
        f"banner\n{m} env\npytorch\n/opt/miniconda3/envs/pytorch\n"
        f'{m} pip pip\nWARNING: x\n[{{"name": "Torch", "version": "2.3.1"}}]\n'
        f'{m} conda conda\n[{{"name": "numpy", "version": "1.26.4", '
        f'"build_string": "py311_0", "channel": "pkgs/main"}}]\n'
    )
    listing = inspect_exec.parse_exec_output(out, "img", ["x"])
    assert listing.conda_prefix == "/opt/miniconda3/envs/pytorch"
    assert [(p.name, p.version) for p in listing.pip] == [("Torch", "2.3.1")]
    assert listing.conda is not None and listing.conda[0].build == "py311_0"
    none = inspect_exec.parse_exec_output(
        f"{m} env\n\n\n{m} pip none\nnull\n{m} conda none\nnull\n", "img", []
    )
    assert (none.pip, none.conda) == ([], None)
    with pytest.raises(ImageFormatError, match="did not print"):
        inspect_exec.parse_exec_output("bash: not found\n", "img", [])
    with pytest.raises(ImageFormatError, match="not JSON"):
        inspect_exec.parse_exec_output(f"{m} env\n\n\n{m} pip pip\n[oops\n", "img", [])


def test_run_exec_goes_through_proc_with_the_site_runtime(fp, sqfs):
    fp.allow_unregistered(True)  # unsquashfs, for the static side, runs for real
    m = inspect_exec.MARK
    argv = inspect_exec.exec_argv("charliecloud", "ch-run", str(sqfs), "squashfs")
    fp.register(
        argv,
        stdout=f"{m} env\npytorch\n/opt/miniconda3/envs/pytorch\n{m} pip pip\n"
        f'[{{"name": "slurmc_probe", "version": "1.2.3"}}]\n{m} conda none\nnull\n',
    )
    listing = inspect_exec.run_exec(
        core.Located(str(sqfs), str(sqfs)), "devcluster", {"HOME": "/x"}
    )
    assert listing.argv == argv
    cmp = inspect_exec.compare_exec(core.inspect_image(str(sqfs)), listing)
    assert cmp == {
        "environment": "/opt/miniconda3/envs/pytorch",
        "only_static": [],
        "only_exec": [],
        "version_differs": [],
    }
    assert "the same pip packages" in inspect_view.render_exec(listing, cmp)


def test_run_exec_on_a_node_uses_srun(fp, sqfs):
    argv = inspect_exec.srun_argv(
        "singularity", "singularity", str(sqfs), "squashfs", ["--partition=small", "--account=p1"]
    )
    fp.register(argv, returncode=1, stderr="srun: error: invalid partition\n")
    from slurmc.errors import ExternalCommandError

    with pytest.raises(ExternalCommandError, match="invalid partition"):
        inspect_exec.run_exec(
            core.Located(str(sqfs), str(sqfs)),
            "lumi",
            {"HOME": "/x"},
            on_node=True,
            srun_options=["--partition=small", "--account=p1"],
        )
