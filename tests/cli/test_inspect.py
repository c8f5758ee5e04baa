"""`slurmc inspect` through Typer's CliRunner: exit codes, text, JSON, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sif_reference import SIF_IMAGES as FIXTURES
from typer.testing import CliRunner

from slurmc.cli.app import app
from slurmc.usecases import inspect_exec
from tests.usecases.test_inspect import make_rootfs, mksquashfs

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    old = mksquashfs(make_rootfs(d / "old"), d / "old.sqfs")
    new = mksquashfs(make_rootfs(d / "new", numpy="2.0.1", extra_pip="h5py"), d / "new.sqfs")
    return old, new


@pytest.fixture
def env(clean_env, monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith(("SLURMC_", "SLURM_", "PROJECT_ID")):
            monkeypatch.delenv(k, raising=False)
    for k, v in clean_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return clean_env


def invoke(*args: str):
    return runner.invoke(app, ["inspect", *args])


def one_line_error(result, text: str) -> None:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("slurmc: error: ") and text in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_table_output(env, images):
    r = invoke(str(images[0]))
    assert r.exit_code == 0, r.output
    assert "Format:  squashfs" in r.output
    assert "Environment pytorch (conda, /opt/miniconda3/envs/pytorch)  [activated by" in r.output
    assert "slurmc_probe  1.2.3" in r.output
    assert "WITH_CONDA: source /opt/miniconda3/bin/activate pytorch" in r.output


def test_json_output(env, images):
    r = invoke(str(images[0]), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["format"] == "squashfs" and out["squashfs"]["compression"] == "gzip"
    env_ = next(e for e in out["environments"] if e["name"] == "pytorch")
    assert env_["pip_packages"][0]["name"] == "slurmc_probe"


def test_sif_fixture(env):
    r = invoke(str(FIXTURES / "two-groups.sif"))
    assert r.exit_code == 0, r.output
    assert "Ext3 System amd64" in r.output and "Squashfs *System 386" in r.output
    out = json.loads(invoke(str(FIXTURES / "two-groups.sif"), "--json").output)
    assert [d["offset"] for d in out["sif"]["descriptors"]] == [32768, 36864, 40960]


def test_diff_text_and_json(env, images):
    r = invoke(str(images[0]), "--diff", str(images[1]))
    assert r.exit_code == 0, r.output
    assert "added (1):" in r.output and "h5py" in r.output
    assert "changed (1):" in r.output and "2.0.1 (py311_0)" in r.output
    out = json.loads(invoke(str(images[0]), "--diff", str(images[1]), "--json").output)
    assert [c["name"] for c in out["added"]] == ["h5py"]
    assert out["removed"] == []


def test_exec_json_through_the_site_runtime(env, images, fp):
    fp.allow_unregistered(True)
    m = inspect_exec.MARK
    argv = inspect_exec.exec_argv("charliecloud", "ch-run", str(images[0]), "squashfs")
    fp.register(
        argv,
        stdout=f"{m} env\npytorch\n/opt/miniconda3/envs/pytorch\n{m} pip pip\n"
        f'[{{"name": "slurmc_probe", "version": "1.2.3"}}]\n{m} conda none\nnull\n',
    )
    r = invoke(str(images[0]), "--exec", "--site", "devcluster", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["pip_packages"] == [{"name": "slurmc_probe", "version": "1.2.3"}]
    assert out["static_comparison"]["only_static"] == []


def test_exec_on_node_passes_srun_options(env, images, fp):
    fp.allow_unregistered(True)
    argv = inspect_exec.srun_argv(
        "singularity",
        "singularity",
        str(images[0]),
        "squashfs",
        ["--partition=small-g", "--account=project_1"],
    )
    fp.register(argv, returncode=1, stderr="srun: error: Unable to allocate resources\n")
    r = invoke(
        str(images[0]), "--exec", "--on-node", "--site", "lumi", "-p", "small-g", "-A", "project_1"
    )
    one_line_error(r, "srun failed (exit 1): srun: error: Unable to allocate resources")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["./missing.sif"], "does not exist"),
        (["library://alpine:3"], "pull it first"),
        (["--on-node", "x.sif"], "--on-node goes with --exec"),
        (["-p", "small", "x.sif"], "go with --exec --on-node"),
        (["--exec", "--diff", "a.sif", "b.sif"], "drop --exec"),
        (["ubuntu:22.04"], "no site given"),
    ],
)
def test_usage_errors(env, args, text):
    one_line_error(invoke(*args), text)


def test_malformed_images_are_one_line(env, tmp_path, images):
    cut = tmp_path / "cut.sif"
    cut.write_bytes((FIXTURES / "one-group.sif").read_bytes()[:5000])
    one_line_error(invoke(str(cut)), "truncated SIF file")
    junk = tmp_path / "junk.sqfs"
    junk.write_bytes(b"hsqs" + os.urandom(4000))
    one_line_error(invoke(str(junk)), str(junk))
    bad = tmp_path / "bad.sqfs"
    data = images[0].read_bytes()
    bad.write_bytes(data[:96] + b"\xa5" * (len(data) - 96))
    one_line_error(invoke(str(bad)), "cannot list the SquashFS file system")
    (tmp_path / "t.tar").write_bytes(b"x" * 1024)
    one_line_error(invoke(str(tmp_path / "t.tar")), "not an image slurmc can read")


def test_missing_unsquashfs_says_what_to_install(env, images, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    one_line_error(invoke(str(images[0])), "install squashfs-tools")


def test_console_script_smoke(images):
    """The installed command lists and runs inspect."""
    exe = shutil.which("slurmc") or str(Path(sys.executable).parent / "slurmc")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert " inspect " in r.stdout
    r = subprocess.run([exe, "inspect", "--json", str(images[0])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["format"] == "squashfs"
