"""slurmc images, catalog: references, and cache command errors through the CLI."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from slurmc.cli.app import app

NAMES = [  # LUMI's naming, with and without -dockerhash- (seed lumi-containers.md)
    "lumi-mpi4py-rocm-6.2.0-python-3.12-mpi4py-3.1.6-dockerhash-f049c8bd4669.sif",
    "lumi-pytorch-rocm-5.7.3-python-3.12-pytorch-v2.2.2-dockerhash-b0bb3b4ea779.sif",
    "lumi-pytorch-rocm-6.2.0-python-3.10-pytorch-v2.3.0-dockerhash-187f41102477.sif",
    "lumi-pytorch-rocm-6.0.3-python-3.12-pytorch-v2.3.1.sif",
    "lumi-pytorch-rocm-6.1.3-python-3.12-pytorch-v2.4.1-dockerhash-04f2083a6cb0.sif",
    "lumi-pytorch-rocm-6.2.1-python-3.12-pytorch-20240918-vllm-4075b35.sif",
]

runner = CliRunner()


@pytest.fixture
def catalog(tmp_path, monkeypatch, clean_env):
    for k in list(os.environ):
        if k.startswith(("SLURMC_", "PROJECT_ID")):
            monkeypatch.delenv(k, raising=False)
    for k, v in clean_env.items():
        monkeypatch.setenv(k, v)
    d = tmp_path / "sif-images"
    d.mkdir()
    for n in NAMES:
        (d / n).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    return d


def test_images_lists_filters_and_picks_newest(catalog):
    r = runner.invoke(app, ["images", "--site", "lumi", "--catalog", str(catalog), "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.output)
    assert len(listed) == 6 and listed[0]["version"] == "20240918-vllm-4075b35"
    r = runner.invoke(
        app,
        [
            "images",
            "--site",
            "lumi",
            "--catalog",
            str(catalog),
            "--package",
            "pytorch",
            "--python",
            "3.10",
            "--newest",
        ],
    )
    assert r.exit_code == 0 and r.output.strip().endswith(
        "pytorch-v2.3.0-dockerhash-187f41102477.sif"
    )
    r = runner.invoke(
        app, ["images", "--site", "lumi", "--catalog", str(catalog), "--package", "mpi4py"]
    )
    assert r.exit_code == 0 and "3.1.6" in r.output and "pytorch" not in r.output


def test_run_takes_a_catalog_image_by_package_and_version(catalog):
    r = runner.invoke(
        app,
        [
            "run",
            "--site",
            "lumi",
            "-A",
            "p",
            "--catalog",
            str(catalog),
            "--dry-run",
            "catalog:pytorch:v2.3.1",
            "--",
            "python",
            "x.py",
        ],
    )
    assert r.exit_code == 0, r.output
    assert str(catalog / "lumi-pytorch-rocm-6.0.3-python-3.12-pytorch-v2.3.1.sif") in r.output
    r = runner.invoke(
        app,
        [
            "run",
            "--site",
            "lumi",
            "-A",
            "p",
            "--catalog",
            str(catalog),
            "--dry-run",
            "catalog:tensorflow",
            "--",
            "x",
        ],
    )
    assert r.exit_code == 1 and "no catalog image for tensorflow" in r.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            ["cache", "pull", "--site", "devcluster", "--cache-dir", "c", "a/../b"],
            "invalid image reference",
        ),
        (["cache", "pull", "--site", "devcluster", "--cache-dir", "c"], "give either"),
        (["cache", "pull", "--site", "devcluster", "--default", "rocm"], "no default rocm"),
        (
            ["cache", "add", "--site", "devcluster", "--cache-dir", "c", "nofile", "a/b:1"],
            "no such file",
        ),
        (["cache", "rm", "--site", "devcluster", "--cache-dir", "c", "a/b:1"], "not in the cache"),
        (
            ["cache", "prune", "--site", "devcluster", "--cache-dir", "c", "--max-size", "lots"],
            "--max-size",
        ),
    ],
)
def test_cache_command_errors_are_one_line(catalog, args, text):
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slurmc: error:") and text in lines[0]
