"""The README tells the truth: its first set-up command and its rendered examples."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, slurmc

pytestmark = pytest.mark.cluster
README = (REPO / "README.md").read_text()


def indented_block_after(marker: str) -> list[str]:
    """The indented code block that follows the line containing *marker*."""
    lines = README.split(marker, 1)[1].splitlines()[1:]
    block: list[str] = []
    for line in lines:
        if line.startswith("    "):
            block.append(line[4:])
        elif block and line.strip():
            break
    return block


def command_of(block: list[str]) -> list[str]:
    text = " ".join(line.rstrip("\\").strip() for line in block if not line.startswith("export"))
    return shlex.split(text)


def test_demo_command_ends_with_the_jobs_output(cluster):
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo")], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    tail = r.stdout.strip().splitlines()[-5:]
    assert tail[0] == "running in: slurmc test image (Debian 12 userland)"
    assert "conda env: pytorch" in tail and "GPUs: 0,1" in tail
    assert tail[-1] == "arguments: ['--lr', '3e-4']"
    assert re.search(r"^job \d+: COMPLETED$", r.stdout, re.M)


def test_lumi_example_renders_what_the_readme_shows(lumi_host_paths, tmp_path):
    block = indented_block_after("### LUMI")
    argv = command_of(block)
    assert argv[:2] == ["slurmc", "run"]
    image = Path(next(a for a in argv if a.endswith(".sif")))
    # leave no LUMI paths behind: they would make site detection pick lumi
    made = [p for p in (image, *image.parents) if not p.exists()]
    image.parent.mkdir(parents=True, exist_ok=True)
    image.touch()
    try:
        r = slurmc(
            "run", "--dry-run", *argv[2:], cwd=tmp_path, env={"PROJECT_ID": "project_465000123"}
        )
    finally:
        for p in made:
            p.unlink() if p.is_file() else p.rmdir()
    assert r.returncode == 0, r.stderr
    shown = indented_block_after("renders (`--dry-run` shows it):")
    for line in shown:
        if line.strip() != "...":
            assert line.strip() in {x.strip() for x in r.stdout.splitlines()}, line


def test_pyxis_example_renders_what_the_readme_shows(tmp_path):
    block = indented_block_after("### An NVIDIA cluster with Enroot and Pyxis")
    argv = command_of(block)
    r = slurmc(
        "run", "--dry-run", *argv[2:], cwd=tmp_path, env={"SLURMC_ENROOT_CACHE": "/shared/enroot"}
    )
    assert r.returncode == 0, r.stderr
    shown = indented_block_after("`/shared/enroot`) and renders")
    out = {x.strip() for x in r.stdout.splitlines()}
    for line in shown:
        assert line.strip() in out, line
    assert os.environ.get("SLURMC_ENROOT_CACHE") is None
