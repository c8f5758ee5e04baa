"""``slurmc venv ...`` and ``slurmc build`` through Typer's CliRunner: exit codes and text.

The commands are registered on a fresh Typer app here, so the package's own app
(and its stored --help text) stays as cli.py makes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from slurmc.cli import venv as cli_venv
from slurmc.usecases import build, venv_build, venvs

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    a = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

    @a.callback()
    def main() -> None:
        """slurmc (test app)"""

    cli_venv.register(a)
    cli_venv.register(a)  # a second registration changes nothing
    return a


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SLURMC_VENV_DIR", raising=False)
    monkeypatch.delenv("SLURMC_SITE", raising=False)
    monkeypatch.chdir(tmp_path)
    return values


@pytest.fixture
def store(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "slurmc" / "venvs"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, store: Path) -> list[Any]:
    """venv_build.create replaced by a recorder that publishes a small file."""
    calls: list[Any] = []

    def fake_create(req, env, cwd, notify=None):
        calls.append(req)
        store.mkdir(parents=True, exist_ok=True)
        (store / f"{req.name}.sqsh").write_bytes(b"hsqs" + b"\0" * 2044)
        (store / f"{req.name}.json").write_text(
            json.dumps({"installed": [{"name": "x", "version": "1"}], "created": "now"})
        )
        return venvs.find_venv(req.name, env, cwd)

    monkeypatch.setattr(venv_build, "create", fake_create)
    return calls


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("slurmc: error: "), result.output
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_create_passes_pip_args_packages_and_options(app, captured, env) -> None:
    r = runner.invoke(
        app,
        [
            "venv",
            "create",
            "probe",
            "--image",
            "img.sif",
            "--pip-arg=--no-index",
            "--pip-arg=--find-links=/w h",
            "-r",
            "req.txt",
            "-B",
            "/w h",
            "--site",
            "lumi",
            "--no-conda",
            "--force",
            "--",
            "venvprobe==0.1",
            "-e",
        ],
    )
    assert r.exit_code == 0, r.output
    req = captured[0]
    assert req.name == "probe" and req.image == "img.sif"
    assert req.pip_args == ("--no-index", "--find-links=/w h")
    assert req.packages == ("venvprobe==0.1", "-e")
    assert req.requirements == "req.txt" and req.binds == ("/w h",)
    assert req.site == "lumi" and req.conda == "none" and req.force
    assert not req.on_node and req.srun_options == ()
    assert "Created venv probe" in r.output and "1 packages" in r.output
    assert "slurmc run --venv probe img.sif" in r.output


def test_create_packages_without_double_dash(app, captured, env) -> None:
    r = runner.invoke(app, ["venv", "create", "v", "h5py", "numpy<2", "--image", "i.sif"])
    assert r.exit_code == 0, r.output
    assert captured[0].packages == ("h5py", "numpy<2") and captured[0].conda is None


def test_create_on_node_takes_srun_options(app, captured, env) -> None:
    r = runner.invoke(
        app,
        ["venv", "create", "v", "x", "-i", "i.sif", "--on-node", "-p", "small", "-t", "10"],
    )
    assert r.exit_code == 0, r.output
    assert captured[0].on_node and captured[0].srun_options == ("--partition=small", "--time=10")


def test_srun_options_need_on_node(app, captured, env) -> None:
    r = runner.invoke(app, ["venv", "create", "v", "x", "-i", "i.sif", "-p", "small"])
    one_line_error(r, "--on-node")
    assert captured == []


def test_create_errors_are_one_line(app, env, tmp_path: Path) -> None:
    one_line_error(
        runner.invoke(app, ["venv", "create", "a/b", "x", "--image", "i.sif"]), "venv name"
    )
    one_line_error(
        runner.invoke(app, ["venv", "create", "v", "--image", str(tmp_path)]), "nothing to install"
    )
    one_line_error(
        runner.invoke(app, ["venv", "create", "v", "x", "--image", "./nope.sif"]),
        "does not exist",
    )


def test_ls_table_and_json(app, env, store: Path) -> None:
    r = runner.invoke(app, ["venv", "ls"])
    assert r.exit_code == 0 and "no venvs in" in r.output
    store.mkdir(parents=True)
    (store / "h5.sqsh").write_bytes(b"hsqs" + b"\0" * 4092)
    meta = {"base_image": {"path": "/appl/x.sif"}, "created": "2025-01-02T03:04:05+00:00"}
    (store / "h5.json").write_text(json.dumps(meta))
    r = runner.invoke(app, ["venv", "ls"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == ["NAME", "BASE", "IMAGE", "SIZE", "CREATED"]
    assert lines[1].split() == ["h5", "/appl/x.sif", "4.0K", "2025-01-02T03:04:05+00:00"]
    r = runner.invoke(app, ["venv", "ls", "--json"])
    data = json.loads(r.output)
    assert data[0]["name"] == "h5" and data[0]["base_image"] == "/appl/x.sif"
    assert data[0]["size"] == 4096 and data[0]["path"] == str(store / "h5.sqsh")


def test_rm(app, env, store: Path) -> None:
    store.mkdir(parents=True)
    (store / "h5.sqsh").write_bytes(b"hsqs")
    (store / "h5.json").write_text("{}")
    r = runner.invoke(app, ["venv", "rm", "h5"])
    assert r.exit_code == 0 and "Removed venv h5" in r.output
    assert list(store.iterdir()) == []
    one_line_error(runner.invoke(app, ["venv", "rm", "h5"]), "no venv named h5")


def test_build_without_cotainr_is_one_line_saying_how_to_get_it(app, env, tmp_path) -> None:
    (tmp_path / "env.yml").write_text("name: e\n")
    r = runner.invoke(
        app, ["build", "out.sif", "--base-image", "docker://ubuntu:24.04", "--conda-env", "env.yml"]
    )
    one_line_error(r, "cotainr not found", "module load CrayEnv cotainr", "pip install cotainr")


def test_build_passes_its_options(app, env, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(out, **kw):
        seen.update(kw, out=out)
        return "/abs/" + out

    monkeypatch.setattr(build, "build_with_cotainr", fake)
    r = runner.invoke(
        app,
        [
            "build",
            "h5.sif",
            "--system",
            "lumi-g",
            "--conda-env",
            "h5-env.yml",
            "--accept-licenses",
            "--force",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Built /abs/h5.sif" in r.output
    assert seen["out"] == "h5.sif" and seen["system"] == "lumi-g" and seen["base_image"] is None
    assert seen["conda_env"] == "h5-env.yml" and seen["accept_licenses"] and seen["force"]


def test_help_texts(app) -> None:
    r = runner.invoke(app, ["venv", "--help"])
    assert r.exit_code == 0 and "create" in r.output and "ls" in r.output and "rm" in r.output
    r = runner.invoke(app, ["venv", "create", "--help"])
    assert "--pip-arg" in r.output and "--requirements" in r.output
    r = runner.invoke(app, ["build", "--help"])
    assert "--conda-env" in r.output and "cotainr" in r.output
