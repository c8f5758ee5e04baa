"""A plain (non-editable) install in a fresh venv carries templates/ and site-configs/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_install_in_a_fresh_venv_ships_templates_and_sites(tmp_path):
    src = tmp_path / "src"  # a copy, so the build cannot see the checkout's files by path
    shutil.copytree(
        REPO, src, ignore=shutil.ignore_patterns(".git", ".venv*", "*.pyc", ".*cache", "site")
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # offline where scripts/bootstrap left a wheelhouse (dependencies and hatchling, the
    # build backend): a fresh machine's test run may have no network; else the index
    wheelhouse = Path(sys.prefix) / "wheelhouse"
    where = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse.is_dir() else []
    r = subprocess.run(
        [py, "-m", "pip", "install", "-q", *where, str(src)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.rmtree(src)  # the installed package must not need the source tree
    exe = env_dir / "bin" / "slurmc"
    r = subprocess.run([exe, "site", "list"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "site-packages/slurmc/_data/site-configs/lumi.toml" in r.stdout
    img = tmp_path / "x.sif"
    img.write_bytes(b"")
    r = subprocess.run(
        [
            exe,
            "run",
            "--site",
            "lumi",
            "-A",
            "p",
            "-p",
            "small-g",
            "--dry-run",
            str(img),
            "--",
            "python",
            "-V",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "srun singularity exec --rocm" in r.stdout
    assert sys.version_info >= (3, 10)
