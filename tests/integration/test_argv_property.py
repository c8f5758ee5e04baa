"""Property: any argument vector arrives byte for byte in the process inside the container,
through the rendered script run by real bash, real srun and the runtime."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurmc.core.plan import JobRequest
from slurmc.core.render import render_step
from slurmc.core.sites import load_site
from slurmc.usecases.submit import plan_job as plan

pytestmark = pytest.mark.cluster

ECHO_ARGV_ENV = (
    "import json, os, sys; n = int(sys.argv[1]); names = sys.argv[2 : 2 + n]; "
    "sys.stdout.write(json.dumps(sys.argv[2 + n :] + [os.environ.get(k) for k in names]))"
)
# printable and whitespace characters of any script (no NUL, no lone surrogates)
WORD = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"]) | st.sampled_from("\t\n\r\x0b\x0c "),
    max_size=24,
)


@pytest.fixture(scope="module")
def allocation(cluster) -> Iterator[str]:
    """One allocation for all examples, so each example is one real srun step."""
    r = subprocess.run(
        ["salloc", "--no-shell", "-p", "small", "-N1", "-n1", "--time", "10", "-J", "argv-prop"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    job = next(w for w in r.stderr.split() if w.isdigit())
    yield job
    subprocess.run(["scancel", job])


def step_runner(site_name: str, image: Path, tmp_path: Path, job_id: str, extra_env=None):
    env = {**os.environ, **(extra_env or {})}
    site = load_site(site_name, env)

    def run(words: list[str], variables: tuple[str, ...] = ()) -> list[str]:
        """The words as the command sees them (then the values of *variables*: NAME=VALUE)."""
        names = [v.partition("=")[0] for v in variables]
        req = JobRequest(
            image=str(image),
            command=("python3", "-c", ECHO_ARGV_ENV, str(len(names)), *names, *words),
            resources={"account": "project_465000001"},
            env=variables,
            interactive=True,
        )
        job = plan(req, site, env, str(tmp_path))
        step = render_step(job)
        r = subprocess.run(
            ["bash", "-c", step, "step"],
            cwd=tmp_path,
            capture_output=True,
            env={**env, "SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id},
            timeout=60,
        )
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return list(json.loads(r.stdout))

    return run


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(words=st.lists(WORD, max_size=6))
def test_any_argv_arrives_unchanged_charliecloud(words, allocation, images, tmp_path_factory):
    run = step_runner("devcluster", images.lumi_sqfs, tmp_path_factory.getbasetemp(), allocation)
    assert run(words) == words


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(words=st.lists(WORD, max_size=6))
def test_any_argv_arrives_unchanged_singularity_double(
    words, allocation, images, doubles, lumi_host_paths, tmp_path_factory
):
    run = step_runner("lumi", images.lumi_sif, tmp_path_factory.getbasetemp(), allocation)
    assert run(words) == words


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(words=st.lists(WORD, max_size=4), values=st.lists(WORD, max_size=4))
def test_any_argv_and_env_value_arrive_unchanged_real_apptainer(
    words, values, allocation, images, real_apptainer, lumi_host_paths, tmp_path_factory
):
    """Through the REAL Apptainer 1.4.5: words and --env values (given to slurmc's inner
    wrapper as arguments; Apptainer's own --env would evaluate and CSV-mangle them)."""
    base = tmp_path_factory.getbasetemp()
    site = real_apptainer.site("lumi", base)
    run = step_runner(str(site), images.lumi_sif, base, allocation, real_apptainer.env)
    variables = tuple(f"V{i}={v}" for i, v in enumerate(values))
    assert run(words, variables) == words + values


def test_hostile_words_arrive_unchanged(allocation, images, tmp_path, hostile):
    run = step_runner("devcluster", images.lumi_sqfs, tmp_path, allocation)
    words = [hostile, "#SBATCH --partition=evil", "a\nb\\c'd\"e$f`g"]
    assert run(words) == words
