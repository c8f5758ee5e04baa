"""The podman site's jobs run for real under Slurm, through Debian's podman (issue 13).

`podman run` works here with a containers.conf of `default_ulimits = []` (crun/runc
cannot set RLIMIT_NOFILE in this sandbox) and cgroupfs with runc, given to the job
through CONTAINERS_CONF (which sbatch passes on, as it passes the whole environment).
"""

from __future__ import annotations

import json

import pytest

from .conftest import PODMAN_CONF, output_of, slurmc, submitted_id, wait_job
from .test_apptainer_values import HOSTILE_ENV
from .test_cache_pull import pull_env, pushed, registry  # noqa: F401  (fixtures)

pytestmark = pytest.mark.cluster

ARGV = ["it's", 'say "hi"', "$HOME", "`id`", "a\\b", "new\nline", ":", "", "ünï ✓"]


@pytest.fixture
def podman_site(cluster, registry, pushed, tmp_path):  # noqa: F811
    conf = tmp_path / "containers.conf"
    conf.write_text(PODMAN_CONF)
    env = {"CONTAINERS_CONF": str(conf), **pull_env(registry)}
    root = tmp_path / "oci"
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "podman",
        "--cache-dir",
        str(root),
        pushed["plain"],
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    return root, pushed["plain"], env


def test_podman_job_runs_with_every_word_and_value_exact(podman_site, tmp_path):
    root, ref, env = podman_site
    args = ["run", "--site", "podman", "--cache-dir", str(root), "--partition", "small"]
    values = {k: v for k, v in HOSTILE_ENV.items() if "\r" not in v}
    for k, v in values.items():
        args += ["--env", f"{k}={v}"]
    probe = (
        "import json, os, sys; names = "
        + repr(sorted(values))
        + "; print(json.dumps({'argv': sys.argv[1:], "
        "'env': {k: os.environ.get(k) for k in names}, "
        "'os': open('/etc/os-release').read()}))"
    )
    r = slurmc(*args, ref, "--", "python3", "-c", probe, *ARGV, cwd=tmp_path, env=env)
    job = submitted_id(r)
    fields = wait_job(job, timeout=240)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen["argv"] == ARGV
    assert seen["env"] == values
    assert "slurmc test image" in seen["os"]


def test_podman_job_exit_status_is_the_commands(podman_site, tmp_path):
    root, ref, env = podman_site
    r = slurmc(
        "run",
        "--site",
        "podman",
        "--cache-dir",
        str(root),
        "--partition",
        "small",
        "--wait",
        ref,
        "--",
        "sh",
        "-c",
        "exit 7",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 7, r.stderr


def test_podman_bind_without_destination_shows_the_host_directory(podman_site, tmp_path):
    """`--bind DIR` alone: podman's `-v DIR` would be an empty anonymous volume."""
    root, ref, env = podman_site
    data = tmp_path.parent / f"{tmp_path.name}-data"  # not under $PWD (mounted anyway)
    data.mkdir()
    (data / "f").write_text("from the host\n")
    r = slurmc(
        *("run", "--site", "podman", "--cache-dir", str(root), "--partition", "small"),
        *("--bind", str(data), ref, "--", "cat", f"{data}/f"),
        cwd=tmp_path,
        env=env,
    )
    fields = wait_job(submitted_id(r), timeout=240)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED" and text.endswith("from the host\n"), text
