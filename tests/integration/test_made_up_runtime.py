"""The runtime contract, proven from outside: a runtime slurmc has never heard of,
defined in one module plus one launch template and nowhere else, is named by a site
file, rendered and submitted to the real cluster.

The module goes into a directory of the test's own, added to the search path of the
``slurmc.runtimes`` package (as a plugin directory would be); the template goes into
the user's template directory (``$XDG_CONFIG_HOME/slurmc/templates``), which slurmc
searches before its own. Nothing under ``slurmc/`` or ``templates/`` is touched: the
test checks that too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import slurmc.runtimes
from slurmc.cli.app import app
from slurmc.runtimes import available, get_runtime

REPO = Path(__file__).resolve().parents[2]

#: a runtime that runs the command on the node itself, with the image named in the
#: environment: enough to show every hook the contract needs, and runnable anywhere
MODULE = """
from __future__ import annotations

from slurmc.runtimes.base import Runtime


class HostRun(Runtime):
    name: str = "hostrun"
    template: str = "launch/hostrun.sh.j2"
    suffix: str = ".img"
    format: str = "directory"
    default_executable: str = "env"
    bind_options: bool = False

    def gpu_flags(self, vendor: str) -> list[str]:
        return [f"HOSTRUN_GPUS={vendor}"] if vendor != "none" else []


RUNTIMES = (HostRun(),)
"""

TEMPLATE = """\
srun{% for arg in job.srun_args %} {{ arg }}{% endfor %} {{ job.executable }} \\
    HOSTRUN_IMAGE={{ job.image_arg }}{% for f in job.gpu_flags %} {{ f }}{% endfor %} \\
    {{ job.entry }}
"""

SITE = """\
name = "madeup"
description = "A site whose runtime only this test defines"

[runtime]
kind = "hostrun"

[slurm]
default_partition = "small"

[slurm.defaults]
time = "00:05:00"

[partitions.small]
gpu_vendor = "none"

[partitions.small-g]
gpu_vendor = "amd"
gpus_per_node = 8
"""


def _tree_state() -> str:
    """What git says of slurmc/ and templates/ (changes and untracked files)."""
    return subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "slurmc", "templates"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def made_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    before = _tree_state()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "hostrun.py").write_text(MODULE)
    monkeypatch.setattr(slurmc.runtimes, "__path__", [*slurmc.runtimes.__path__, str(plugins)])
    config = tmp_path / "config"
    (config / "slurmc" / "templates" / "launch").mkdir(parents=True)
    (config / "slurmc" / "templates" / "launch" / "hostrun.sh.j2").write_text(TEMPLATE)
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "madeup.toml").write_text(SITE)
    image = tmp_path / "image.img"
    image.mkdir()
    env = {
        "XDG_CONFIG_HOME": str(config),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "SLURMC_SITE_PATH": str(sites),
        "SLURMC_SITE": "madeup",
        "SLURMC_PROJECT_FILE": "",
        "IMAGE": str(image),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    yield env
    sys.modules.pop("slurmc.runtimes.hostrun", None)
    assert _tree_state() == before, "the made-up runtime changed files of slurmc"


def test_the_module_is_found_by_its_name(made_up):
    assert "hostrun" in available()
    runtime = get_runtime("hostrun")
    assert runtime.executable == "env"  # the site file names none: the runtime's default
    with pytest.raises(KeyError):
        get_runtime("nosuchruntime")


def test_it_renders_through_its_own_template(made_up):
    options = ["--dry-run", "-p", "small-g", "--gpus-per-node", "1"]
    r = CliRunner().invoke(app, ["run", *options, made_up["IMAGE"], "echo", "a b", "$HOME"])
    assert r.exit_code == 0, r.output
    script = r.stdout
    assert "runtime hostrun" in script
    assert f"HOSTRUN_IMAGE={made_up['IMAGE']} HOSTRUN_GPUS=amd" in script
    assert "echo 'a b' '$HOME'" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_its_limits_are_enforced_by_the_core(made_up):
    """bind_options = False in the module: a bind with options is refused up front."""
    r = CliRunner().invoke(app, ["run", "--dry-run", "-B", "/a:/b:ro", made_up["IMAGE"], "true"])
    assert r.exit_code != 0
    assert "hostrun binds take SRC[:DST], no options" in r.output


@pytest.mark.cluster
def test_it_submits_and_runs_on_the_cluster(made_up, cluster):
    r = CliRunner().invoke(
        app, ["run", "--wait", made_up["IMAGE"], "sh", "-c", 'echo "ran with $HOSTRUN_IMAGE"']
    )
    assert r.exit_code == 0, r.output
    assert f"ran with {made_up['IMAGE']}" in r.stdout


def test_the_module_is_all_it_takes():
    """No code outside runtimes/ names a runtime: a new one needs no other change."""
    names = ("apptainer", "singularity", "charliecloud", "enroot", "podman", "pyxis")
    offenders = []
    for path in sorted((REPO / "slurmc").rglob("*.py")):
        if "runtimes" in path.parts:
            continue
        text = path.read_text()
        for name in names:
            for quote in ('"', "'"):
                if f"{quote}{name}{quote}" in text:
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    # the one hit names a SIF's Singularity metadata in inspect's output, not a runtime
    assert offenders == ["slurmc/images/metadata.py: singularity"], offenders
