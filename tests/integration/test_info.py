"""`slurmc info` on the local cluster: what is there, and what is missing (issue 15)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .conftest import slurmc
from .test_cache_pull import tmpfs

pytestmark = pytest.mark.cluster


def checks_of(stdout: str) -> dict[str, dict]:
    doc = json.loads(stdout)
    return {c["name"]: c for c in doc["checks"]}


def test_everything_there_on_the_local_cluster(cluster, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o2775)
    os.chmod(cache, 0o3775)  # setgid + sticky, as a shared cache should be
    r = slurmc(
        "info", "--site", "devcluster", "--json", cwd=tmp_path, env={"SLURMC_CACHE_DIR": str(cache)}
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["site"] == "devcluster"
    checks = checks_of(r.stdout)
    version = subprocess.run(["sbatch", "--version"], capture_output=True, text=True).stdout.strip()
    assert checks["sbatch"]["ok"] and checks["sbatch"]["detail"] == version
    assert checks["controller"]["ok"] and "is UP" in checks["controller"]["detail"]
    ch = subprocess.run(
        ["ch-run", "--version"], capture_output=True, text=True, env={**os.environ, "USER": "x"}
    )
    assert checks["runtime charliecloud"]["detail"] == (ch.stdout or ch.stderr).strip()
    assert (
        checks["squashfs-tools"]["ok"]
        and "unsquashfs version" in checks["squashfs-tools"]["detail"]
    )
    assert checks[f"cache {cache}"]["ok"] and "writable" in checks[f"cache {cache}"]["detail"]
    assert f"cache {cache} setgid" not in checks and f"cache {cache} sticky" not in checks


def test_missing_sbatch_is_named_with_what_to_do(cluster, tmp_path):
    """PATH holds everything slurmc and the checks use, except sbatch."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("srun", "salloc", "scontrol", "ch-run", "unsquashfs"):
        found = shutil.which(tool, path="/usr/bin:/usr/sbin:/bin")  # real tools, not doubles
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    exe = shutil.which("slurmc")
    assert exe
    r = subprocess.run(
        [exe, "info", "--site", "devcluster"],
        cwd=tmp_path,
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "MISSING   sbatch: sbatch not found on PATH" in r.stdout
    assert "install Slurm's client commands" in r.stdout
    assert r.stderr.strip() == "slurmc: missing for site devcluster: sbatch (see above)"
    assert "ok        srun:" in r.stdout


def test_unwritable_cache_is_missing_and_says_what_to_do(cluster, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        r = slurmc(
            "info",
            "--site",
            "devcluster",
            "--json",
            cwd=tmp_path,
            env={"SLURMC_CACHE_DIR": str(ro)},
        )
    assert r.returncode == 1, r.stdout + r.stderr
    checks = checks_of(r.stdout)
    assert "read-only for you" in checks[f"cache {ro}"]["detail"]
    assert checks["writable cache"]["ok"] is False and checks["writable cache"]["required"]
    assert "--cache-dir DIR" in checks["writable cache"]["fix"]
    assert "writable cache" in r.stderr


def test_without_slurm_conf_it_says_how_to_find_the_cluster(cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    exe = shutil.which("slurmc")
    assert exe
    r = subprocess.run(
        [exe, "info", "--site", "devcluster"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert "sbatch cannot find the cluster's configuration" in r.stdout
    assert "export SLURM_CONF=" in r.stdout
    assert "Traceback" not in r.stderr


def test_credentials_readable_by_others_are_refused(cluster, tmp_path):
    config = tmp_path / "config"
    cred = config / "slurmc" / "credentials"
    cred.parent.mkdir(parents=True)
    cred.write_text("machine 127.0.0.1:5443 login u password p\n")
    os.chmod(cred, 0o644)
    r = slurmc(
        "info", "--site", "devcluster", "--json", cwd=tmp_path, env={"XDG_CONFIG_HOME": str(config)}
    )
    assert r.returncode == 1
    check = checks_of(r.stdout)["credentials"]
    assert check["fix"] == f"chmod 600 {cred}" and not check["ok"]
    os.chmod(cred, 0o600)
    r = slurmc(
        "info", "--site", "devcluster", "--json", cwd=tmp_path, env={"XDG_CONFIG_HOME": str(config)}
    )
    assert r.returncode == 0 and checks_of(r.stdout)["credentials"]["ok"]
    assert "password" not in r.stdout and " p\n" not in r.stdout
