"""slurmc.usecases.info's checks, with the external commands faked (pytest-subprocess)."""

from __future__ import annotations

import os
from pathlib import Path

from slurmc.runtimes import get_runtime
from slurmc.usecases import info


def test_controller_down(fp):
    fp.register(["scontrol", "ping"], stdout="Slurmctld(primary) at ctl is DOWN\n", returncode=1)
    check = info._controller({})
    assert not check.ok and check.required and "DOWN" in check.detail
    assert "SLURM_CONF" in check.fix


def test_controller_up(fp):
    fp.register(["scontrol", "ping"], stdout="Slurmctld(primary) at ctl is UP\n")
    assert info._controller({}).ok


def test_a_controller_that_hangs_is_a_clear_failure_not_a_hang(tmp_path, monkeypatch):
    """A real process that never answers (no fake subprocess here)."""
    monkeypatch.setattr(info, "TIMEOUT", 0.5)
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    scontrol.chmod(0o755)
    check = info._controller({"PATH": str(tmp_path)})
    assert not check.ok and "timed out after 0.5 s" in check.detail


def test_version_of_each_runtime_is_its_own_command():
    assert get_runtime("enroot").version_argv("enroot") == ["enroot", "version"]
    assert get_runtime("apptainer").version_argv("/opt/x/apptainer") == [
        "/opt/x/apptainer",
        "--version",
    ]
    assert get_runtime("charliecloud").version_argv("ch-run") == ["ch-run", "--version"]
    assert get_runtime("podman").version_argv("podman") == ["podman", "--version"]


def test_installed_but_broken_tool(fp):
    fp.register(["sbatch", "--version"], stderr="sbatch: error: something\n", returncode=2)
    check = info._version("sbatch", ["sbatch", "--version"], {}, "install it")
    assert not check.ok and check.detail == "sbatch --version exited 2: sbatch: error: something"
    assert "installed but does not work" in check.fix


def test_no_slurm_config_hint(fp):
    err = "sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
    fp.register(["sbatch", "--version"], stderr=err, returncode=1)
    check = info._version("sbatch", ["sbatch", "--version"], {}, "install it")
    assert check.fix == info.CONFIG_FIX


def test_cache_modes(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o775)
    names = {c.name: c for c in info.cache_checks((str(shared),), ())}
    assert not names[f"cache {shared} setgid"].ok and not names[f"cache {shared} setgid"].required
    assert not names[f"cache {shared} sticky"].ok
    os.chmod(shared, 0o3775)
    names = {c.name: c for c in info.cache_checks((str(shared),), ())}
    assert set(names) == {f"cache {shared}"}


def test_missing_cache_root_that_can_be_created(tmp_path: Path):
    root = tmp_path / "a" / "b"
    checks = info.cache_checks((str(root),), ())
    assert [c.name for c in checks] == [f"cache {root}"]
    assert not checks[0].required and "the first pull creates it" in checks[0].detail


def test_cache_path_needing_an_unset_variable(tmp_path: Path):
    checks = info.cache_checks(
        (), ("lumi.toml: images.cache: '/scratch/$PROJECT_ID' needs $PROJECT_ID",)
    )
    assert checks[0].required and not checks[0].ok and "PROJECT_ID" in checks[0].detail


def test_catalogs(tmp_path: Path):
    (c,) = info.catalog_checks((str(tmp_path),))
    assert c.ok
    (c,) = info.catalog_checks((str(tmp_path / "nope"),))
    assert not c.ok and "--catalog" in c.fix
