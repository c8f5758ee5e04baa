"""--env values through Charliecloud (the real ch-run) and Enroot/Pyxis (the double),
under the real Slurm: every value arrives exactly, inside the container only (issue 13).

A variable meant for the container must not change the batch script's own environment:
``--env PATH=...`` used to be exported before ``srun``, changing where srun itself was
looked up.
"""

from __future__ import annotations

import json
import os

import pytest

from .conftest import output_of, slurmc, submitted_id, wait_job
from .test_apptainer_values import HOSTILE_ENV, READ_ENV

pytestmark = pytest.mark.cluster


def _run(site: str, image: str, env: dict[str, str], tmp_path, extra_env=None, py="python3"):
    args = ["run", "--site", site, "--partition", "small"]
    for k, v in env.items():
        args += ["--env", f"{k}={v}"]
    names = [*env, "HOST_ONLY"]
    r = slurmc(*args, image, "--", py, "-c", READ_ENV, *names, cwd=tmp_path, env=extra_env)
    job = submitted_id(r)
    fields = wait_job(job, timeout=180)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    return json.loads(text.strip().splitlines()[-1]), output_of(r)


@pytest.fixture(params=["charliecloud", "pyxis_double"])
def where(request, cluster, images, doubles, tmp_path):
    if request.param == "charliecloud":
        return "devcluster", str(images.plain_sqfs), {}
    root = tmp_path / "enroot"
    (root / "slurmc").mkdir(parents=True)
    os.symlink(images.plain_sqfs, root / "slurmc" / "test:plain.sqsh")
    return "nvidia-pyxis", "slurmc/test:plain", {"SLURMC_ENROOT_CACHE": str(root)}


def test_hostile_values_arrive_exactly(where, tmp_path):
    site, image, extra_env = where
    env = {k: v for k, v in HOSTILE_ENV.items() if "\r" not in v}
    seen, _ = _run(site, image, env, tmp_path, extra_env)
    for k, v in env.items():
        assert seen[k] == v, k
    assert seen["HOST_ONLY"] is None


def test_path_for_the_container_does_not_move_srun(where, tmp_path):
    site, image, extra_env = where
    path = "/nowhere/bin"  # exported before srun, no srun (nor anything) could be found
    seen, _ = _run(site, image, {"PATH": path}, tmp_path, extra_env, py="/usr/bin/python3")
    assert seen["PATH"] == path
