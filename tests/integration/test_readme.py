"""The README tells the truth: its first set-up command and its rendered examples."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from .conftest import IMAGE_OS, REPO, slurmc

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
    assert tail[0] == f"running in: {IMAGE_OS}"
    assert "conda env: pytorch" in tail and "GPUs: 0,1" in tail
    assert tail[-1] == "arguments: ['--lr', '3e-4']"
    # the demo follows its job with `slurmc run --wait`, so its record learns how it ended
    ended = re.search(r"^slurmc: job (\d+) completed \(exit code 0\)$", r.stderr, re.M)
    assert ended, r.stderr[-3000:]
    # and it tells the newcomer how to use the cluster from their own shell
    assert "scripts/env" in r.stderr
    # run again: the image is not re-added (same bytes), no stray lines on either stream
    again = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo")], capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is in the cache already" in again.stderr
    assert not re.search(r"^\d+ \d+$", again.stderr + again.stdout, re.M)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    env.pop("SLURM_CONF", None)
    shown = subprocess.run(
        ["bash", "-c", f'eval "$({REPO}/scripts/env)" && slurmc jobs show {ended[1]} --json'],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert '"COMPLETED"' in shown.stdout


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


def test_using_the_cluster_by_hand_works_as_the_readme_shows(cluster, tmp_path):
    """The block after the two commands runs as written, from a shell with no SLURM_CONF."""
    block = indented_block_after("Then use slurmc and the local cluster from your own shell:")
    assert block[0].startswith('eval "$(scripts/env)"')
    lines = [line.split("  #")[0].strip() for line in block]
    script = (
        "set -e\ncd "
        + shlex.quote(str(REPO))
        + "\n"
        + lines[0]
        + "\ncd "
        + shlex.quote(str(tmp_path))
        + "\n"
        + "\n".join(lines[1:])
    )
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env["PATH"] = "/usr/bin:/bin"
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "hello"
    assert re.search(r"^JOBID\s+STATE", r.stdout, re.M)
