"""Shell completion, driven the way bash and zsh drive it (issue 15).

The scripts are slurmc's own (`_SLURMC_COMPLETE=bash_source slurmc`); bash sources
it and calls the completion function with COMP_WORDS/COMP_CWORD set, as it does on
<TAB>; for zsh, the script's own call (`_SLURMC_COMPLETE=zsh_complete` with `words`
and `CURRENT`) is made and its answer parsed, and the script is checked with `zsh -n`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

SLURMC = str(Path(sys.executable).with_name("slurmc"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user with one cached image, one venv-less home, and two job records."""
    cache = tmp_path / "cache"
    (cache / "library").mkdir(parents=True)
    (cache / "library" / "ubuntu:22.04.sqfs").write_bytes(b"hsqs" + b"\0" * 96)
    jobs = tmp_path / "state" / "slurmc" / "jobs"
    jobs.mkdir(parents=True)
    for jid in ("1234", "1250"):
        (jobs / f"{jid}.devcluster.json").write_text("{}")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.sif").write_bytes(b"")
    (tmp_path / "images" / "notes.txt").write_text("")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLURMC_")},
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "SLURMC_CACHE_DIR": str(cache),
        "SLURMC_PROJECT_FILE": "none",
    }


def bash_complete(env: dict[str, str], line: str) -> list[str]:
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    script = (
        f'eval "$(_SLURMC_COMPLETE=bash_source {shlex.quote(SLURMC)})"\n'
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        f"_slurmc_completion {shlex.quote(SLURMC)}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return [w for w in r.stdout.splitlines() if w]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("slurmc ca", ["cache"]),
        ("slurmc run --site lu", ["lumi"]),
        ("slurmc run --site d", ["determined", "devcluster"]),
        ("slurmc run --site lumi -p st", ["standard", "standard-g"]),
        ("slurmc shell --site devcluster --partition small", ["small", "small-g"]),
        ("slurmc run --site devcluster ubu", ["ubuntu:22.04"]),
        ("slurmc jobs show 12", ["1234", "1250"]),
        ("slurmc jobs logs 125", ["1250"]),
        ("slurmc cache ls --site nv", ["nvidia-pyxis"]),
        ("slurmc site show po", ["podman"]),
    ],
)
def test_bash(env, line, expected):
    assert bash_complete(env, line) == expected


def test_bash_image_files(env, tmp_path):
    got = bash_complete(env, f"slurmc run --site devcluster {tmp_path}/images/")
    assert got == [f"{tmp_path}/images/mine.sif"]  # image files, not notes.txt


def test_a_broken_site_file_offers_nothing_not_a_traceback(env, tmp_path):
    site = tmp_path / "config" / "slurmc" / "sites"
    site.mkdir(parents=True)
    (site / "broken.toml").write_text("name = [")
    assert bash_complete(env, "slurmc run --site broken -p s") == []


def test_zsh(env):
    source = subprocess.run(
        [SLURMC], env={**env, "_SLURMC_COMPLETE": "zsh_source"}, capture_output=True, text=True
    )
    assert source.returncode == 0 and "compdef" in source.stdout
    check = subprocess.run(["zsh", "-n"], input=source.stdout, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # what the script runs on <TAB>: words, CURRENT-1, zsh_complete
    r = subprocess.run(
        [SLURMC],
        env={
            **env,
            "_SLURMC_COMPLETE": "zsh_complete",
            "COMP_WORDS": "slurmc run --site lu",
            "COMP_CWORD": "3",
        },
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["plain", "lumi"]
