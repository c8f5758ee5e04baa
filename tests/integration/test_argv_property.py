"""Property: any argument vector arrives byte for byte in the process inside the container,
through the rendered script run by real bash, real srun and the runtime."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
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


# ... and bytes that are not UTF-8 (0x80-0xff alone, as Python's surrogateescape holds
# them: U+DC80-U+DCFF), next to ':' (srun's separator), '%' and backslashes
NOT_UTF8 = st.sampled_from([chr(c) for c in range(0xDC80, 0xDD00)])
BYTES_WORD = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"])
    | st.sampled_from("\t\n\r\x0b\x0c :%\\")
    | NOT_UTF8,
    max_size=24,
)
# every example holds at least one word with such a byte
BYTES_WORDS = st.builds(
    lambda words, odd, at: [*words[:at], odd, *words[at:]],
    st.lists(BYTES_WORD, max_size=5),
    st.builds(lambda a, b, c: a + b + c, BYTES_WORD, NOT_UTF8, BYTES_WORD),
    st.integers(0, 5),
)
BYTES_EXAMPLE = [":", "\udcff", "a\udc80b\\0101%b\\c", "\udcc3\udca9 \u00e9", "x\n"]
# the bytes of each argument, as hex (whatever the container's locale makes of them)
ECHO_BYTES = "import json, os, sys; print(json.dumps([os.fsencode(a).hex() for a in sys.argv[1:]]))"


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


def step_runner(
    site_name: str, image: Path, tmp_path: Path, job_id: str, extra_env=None, echo_bytes=False
):
    env = {**os.environ, **(extra_env or {})}
    site = load_site(site_name, env)

    def run(words: list[str], variables: tuple[str, ...] = ()) -> list[str]:
        """The words as the command sees them (then the values of *variables*: NAME=VALUE);
        with *echo_bytes*, the bytes of each word as hex."""
        names = [v.partition("=")[0] for v in variables]
        echo = (
            ("python3", "-c", ECHO_BYTES)
            if echo_bytes
            else ("python3", "-c", ECHO_ARGV_ENV, str(len(names)), *names)
        )
        req = JobRequest(
            image=str(image),
            command=(*echo, *words),
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


# ---- bytes that are not UTF-8 arrive byte for byte (issue 13) -------------------------


def hexes(words: list[str]) -> list[str]:
    return [os.fsencode(w).hex() for w in words]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(words=BYTES_WORDS)
@example(words=BYTES_EXAMPLE)
def test_any_bytes_arrive_unchanged_charliecloud(words, allocation, images, tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    run = step_runner("devcluster", images.lumi_sqfs, base, allocation, echo_bytes=True)
    assert run(words) == hexes(words)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(words=BYTES_WORDS)
@example(words=BYTES_EXAMPLE)
def test_any_bytes_arrive_unchanged_enroot_pyxis_doubles(
    words, allocation, images, doubles, tmp_path_factory
):
    base = tmp_path_factory.getbasetemp()
    run = step_runner("nvidia-pyxis", images.plain_sqfs, base, allocation, echo_bytes=True)
    assert run(words) == hexes(words)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(words=BYTES_WORDS)
@example(words=BYTES_EXAMPLE)
def test_any_bytes_arrive_unchanged_real_podman(
    words, allocation, oci_image, podman, tmp_path_factory
):
    """Real Podman 4.3: its OCI config is JSON, so slurmc escapes such words (podman.py)."""
    base = tmp_path_factory.getbasetemp()
    run = step_runner("podman", oci_image, base, allocation, echo_bytes=True)
    assert run(words) == hexes(words)
