"""Without SLURM_CONF, Slurm's commands cannot find the cluster: slurmc says how to fix it
(the real sbatch and squeue, which fail fast with a DNS SRV message)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("conf", [None, "/nonexistent/slurm.conf"], ids=["unset", "missing-file"])
def test_run_and_jobs_say_how_to_reach_the_cluster(cluster, images, tmp_path, conf):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    if conf:
        env["SLURM_CONF"] = conf
    exe = shutil.which("slurmc")
    assert exe
    r = subprocess.run(
        [exe, "run", "--site", "devcluster", str(images.plain_sqfs), "true"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "cannot find the Slurm cluster's configuration" in lines[0] or "no such file" in lines[0]
    assert "export SLURM_CONF=" in lines[0]
    assert "DNS SRV" not in lines[0] and "fetch_config" not in lines[0]
    assert "Traceback" not in r.stderr
