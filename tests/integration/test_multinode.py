"""Jobs, pulls and locks across several hosts: a 3-node cluster on this machine.

`SLURMC_DEVCLUSTER_NODES=3 scripts/devcluster up` (scripts/devcluster-nodes) runs each
slurmd in its own network and UTS namespace (node1..node3, 10.251.0.11-13 on a bridge
inside the namespaces it makes) and the controller in a "login" namespace. slurmc runs
there, as on a login node; the nodes share this machine's file system, as cluster nodes
share a parallel file system.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import test_cache_pull as pulls
from . import test_shell as shell_mod
from .conftest import IMAGE_OS, REPO

# the registry fixture and helpers of the single-node pull tests
registry = pulls.registry
pull_env, push = pulls.pull_env, pulls.push

pytestmark = pytest.mark.cluster

NODES_SCRIPT = REPO / "scripts" / "devcluster-nodes"
N = 3


@dataclass(frozen=True)
class Nodes:
    conf: str
    netns: str

    def argv(self, where: str, *argv: str) -> list[str]:
        """*argv* run on *where*: ``login`` (slurmc's host) or ``node1`` .. ``node3``."""
        return [str(NODES_SCRIPT), "exec", where, *argv]

    def run(
        self, where: str, *argv: str, cwd: Path, env: dict[str, str] | None = None, timeout=300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(where, *argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def slurmc(self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout=300):
        exe = shutil.which("slurmc")
        assert exe, "slurmc console script not installed"
        return self.run("login", exe, *args, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def nodes(cluster) -> Iterator[Nodes]:
    """The 3-node cluster; stopped afterwards if this module started it."""
    env = {**os.environ, "SLURMC_DEVCLUSTER_NODES": str(N)}
    script = REPO / "scripts" / "devcluster"
    was_up = subprocess.run([script, "status"], env=env, capture_output=True).returncode == 0
    r = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(
            f"SLURMC_DEVCLUSTER_NODES={N} scripts/devcluster up failed:\n{r.stderr[-3000:]}"
        )
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in r.stdout.splitlines()
        if line.startswith("export ")
    )
    assert exports["SLURMC_NODES"] == str(N)
    yield Nodes(exports["SLURMC_NODES_CONF"], exports["SLURMC_NODES_NETNS"])
    if not was_up:
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=300)


def job_id_of(stderr: str) -> str:
    m = re.search(r"^Submitted job (\d+)", stderr, re.M)
    assert m, stderr
    return m[1]


def test_each_node_is_its_own_host(nodes, tmp_path):
    names = {
        nodes.run(f"node{i}", "hostname", cwd=tmp_path).stdout.strip() for i in range(1, N + 1)
    }
    assert names == {"node1", "node2", "node3"}
    r = nodes.run("login", "sinfo", "-h", "-N", "-o", "%N %T", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted({line.split()[0] for line in r.stdout.splitlines()}) == sorted(names)


def test_containerized_job_on_three_nodes(nodes, images, tmp_path):
    """Every task runs in its container on its own node; --wait and `slurmc jobs` follow it."""
    probe = '. /etc/os-release; echo "$(hostname) $SLURM_NODEID $SLURM_PROCID $PRETTY_NAME"'
    r = nodes.slurmc(
        "run",
        "--site",
        "devcluster",
        "-N",
        str(N),
        "--ntasks-per-node",
        "1",
        "--wait",
        str(images.plain_sqfs),
        "--",
        "sh",
        "-c",
        probe,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rows = sorted(line.split(" ", 3) for line in r.stdout.splitlines())
    assert [row[0] for row in rows] == ["node1", "node2", "node3"], r.stdout
    assert sorted(row[2] for row in rows) == ["0", "1", "2"]
    assert all(row[3] == IMAGE_OS for row in rows), r.stdout
    job = job_id_of(r.stderr)
    assert f"job {job} completed (exit code 0)" in r.stderr
    listed = nodes.slurmc("jobs", "show", job, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert '"state": "COMPLETED"' in listed.stdout
    assert '"cluster": "devcluster"' in listed.stdout


def test_pull_inside_jobs_on_three_nodes_at_once_is_one_transfer(nodes, registry, images, tmp_path):
    """`pull = "job"`, image missing, three jobs start on three nodes together: the
    cache lock (held across hosts) lets one pull; the others wait and use its file."""
    rootfs = images.plain_sqfs.parent / "rootfs"
    ref = push(registry, rootfs, f"slurmc/nodes-{os.getpid()}-{int(time.time())}:v1")
    name = ref.split("/", 1)[1].split(":")[0]
    site = tmp_path / "pull-in-job.toml"
    site.write_text(
        (REPO / "site-configs" / "devcluster.toml")
        .read_text()
        .replace("[images]\n", '[images]\npull = "job"\n')
        .replace('name = "devcluster"', 'name = "pull-in-job"')
        .replace('cluster_name = "devcluster"', 'cluster_name = "nowhere"')
    )
    root = tmp_path / "cache"
    offset = registry.log_offset()
    jobs = []
    for i in range(1, N + 1):
        r = nodes.slurmc(
            "run",
            "--site",
            str(site),
            "--cache-dir",
            str(root),
            "--parsable",
            f"--sbatch-arg=--nodelist=node{i}",
            "--sbatch-arg=--hold",
            ref,
            "--",
            "sh",
            "-c",
            '. /etc/os-release; echo "$(hostname) $PRETTY_NAME"',
            cwd=tmp_path,
            env=pull_env(registry),
        )
        assert r.returncode == 0, r.stderr
        jobs.append(r.stdout.split()[0])
    # released together: the three batch scripts pull at the same moment
    rel = nodes.run("login", "scontrol", "release", ",".join(jobs), cwd=tmp_path)
    assert rel.returncode == 0, rel.stderr
    outs = []
    for job in jobs:
        f = nodes.slurmc("jobs", "logs", job, "--follow", cwd=tmp_path, timeout=300)
        assert f.returncode == 0, f.stdout + f.stderr
        outs.append(f.stdout)
    text = "".join(outs)
    hosts = sorted(line.split()[0] for line in text.splitlines() if "slurmc test image" in line)
    assert hosts == ["node1", "node2", "node3"], text
    time.sleep(1)  # the registry logs a request after answering it
    assert registry.blob_fetches(offset, name) == 2, "config + one layer, fetched once for all"
    cached = list(root.rglob("*.sqfs"))
    assert len(cached) == 1, cached


LOCK_HOLDER = """
import sys, time
from slurmc.cache.lock import ImageLock
lock = ImageLock(sys.argv[1], lifetime=float(sys.argv[2]), timeout=5)
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
"""

LOCK_WAITER = """
import sys, time
from slurmc.cache.lock import ImageLock
lock = ImageLock(sys.argv[1], lifetime=float(sys.argv[2]), timeout=120,
                 on_wait=lambda o: print("waiting for", o.describe(), flush=True))
assert lock.acquire()
print("acquired", time.time(), flush=True)
lock.release()
"""


def test_cache_lock_across_hosts(nodes, tmp_path):
    """A lock held on node1 is waited for on node2 while node1's heartbeat runs, however
    long; once node1's holder is SIGKILLed, node2 takes over after `lifetime`, not before."""
    lifetime = 3.0
    lock = tmp_path / "img.sqfs.lock"
    holder = subprocess.Popen(
        nodes.argv("node1", sys.executable, "-c", LOCK_HOLDER, str(lock), str(lifetime)),
        stdout=subprocess.PIPE,
        text=True,
    )
    waiter = None
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen(
            nodes.argv("node2", sys.executable, "-c", LOCK_WAITER, str(lock), str(lifetime)),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert waiter.stdout is not None
        said = waiter.stdout.readline()
        # the waiter names the holder's host and pid (node1's, not its own)
        assert said.startswith("waiting for host node1, pid "), said
        time.sleep(3 * lifetime)  # three lifetimes: only the heartbeat keeps the lock
        assert waiter.poll() is None, "node2 took a lock whose holder on node1 is alive"
        killed_at = time.time()
        holder.send_signal(signal.SIGKILL)  # the holder dies without releasing
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, out
        acquired = float(out.split()[-1])
        # not before `lifetime` (less the heartbeat period: the last beat may predate
        # the kill by up to lifetime/4), and soon after
        assert lifetime * 0.7 <= acquired - killed_at <= lifetime + 3, acquired - killed_at
    finally:
        for p in (holder, waiter):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def test_lumi_whole_node_job_on_two_nodes(nodes, images, doubles, lumi_host_paths, tmp_path):
    """standard-g on 2 nodes: the script binds each task to its GCD's cores with LUMI's
    masks on every node, and each task sees its own GCD (ROCR_VISIBLE_DEVICES)."""
    args = [
        "run",
        "--site",
        "lumi",
        "-p",
        "standard-g",
        "-N",
        "2",
        "--ntasks-per-node",
        "8",
        "--gpus-per-node",
        "8",
        "--time",
        "5:00",
        str(images.lumi_sif),
        "--",
        "sh",
        "-c",
        'echo "$(hostname) $SLURM_LOCALID $ROCR_VISIBLE_DEVICES"',
    ]
    env = {"PROJECT_ID": "project_465000001"}
    dry = nodes.slurmc(*args[:1], "--dry-run", *args[1:], cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "--cpu-bind=mask_cpu:0xfe000000000000,0xfe00000000000000,0xfe0000," in dry.stdout
    assert "ROCR_VISIBLE_DEVICES=$SLURM_LOCALID" in dry.stdout
    r = nodes.slurmc(*args[:1], "--wait", *args[1:], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    seen: dict[str, set[tuple[str, str]]] = {}
    # the output file also holds srun's and the runtime's own stderr lines: "srun: cluster
    # configuration lacks support for cpu binding" (TaskPlugin=task/none here: the masks
    # are given to srun but not enforced) and the double's --rocm warning
    for host, local_id, gcd in re.findall(r"^(node\d) (\d+) (\d+)$", r.stdout, re.M):
        seen.setdefault(host, set()).add((local_id, gcd))
    assert sorted(seen) == ["node1", "node2"], r.stdout
    for host, pairs in seen.items():
        # eight tasks per node, task i on GCD i
        assert pairs == {(str(i), str(i)) for i in range(8)}, (host, pairs)


def test_shell_on_one_node_of_a_multi_node_allocation(nodes, images, tmp_path):
    """`slurmc shell -N 2`: salloc takes two nodes, the shell runs in the container on the
    allocation's first node only (one task), with the whole allocation in its environment."""
    session = f"slurmc-nodes-{uuid.uuid4().hex[:8]}"
    exe = shutil.which("slurmc")
    assert exe and shutil.which("tmux")
    env = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in {"PATH": os.environ["PATH"], "USER": "root"}.items()
    )
    inner = (
        f"cd {shlex.quote(str(tmp_path))} && env {env} {exe} shell --site devcluster "
        f"--sbatch-arg=--nodes=2 {images.lumi_sqfs}; echo SHELL-EXITED-$?; sleep 60"
    )
    cmd = shlex.join(nodes.argv("login", "bash", "-c", inner))
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", cmd], check=True
    )
    try:
        shell_mod._wait_for(session, r"bash-\d")  # the container's prompt
        subprocess.run(
            [
                "tmux",
                "send-keys",
                "-t",
                session,
                'echo "host=$(hostname) nodes=$SLURM_JOB_NODELIST n=$SLURM_JOB_NUM_NODES '
                'tasks=$SLURM_NTASKS pty=$([ -t 0 ] && echo yes)"; grep PRETTY /etc/os-release',
                "Enter",
            ],
            check=True,
        )
        m = shell_mod._wait_for(session, r"host=(\S+) nodes=(\S+) n=(\d+) tasks=(\d+) pty=(\w*)")
        host, nodelist, nnodes, ntasks, pty = m.groups()
        assert ntasks == "1", m.group(0)  # one shell, not one per node
        assert nnodes == "2" and pty == "yes", m.group(0)
        assert host in ("node1", "node2", "node3") and nodelist.startswith("node"), m.group(0)
        shell_mod._wait_for(session, "slurmc test image")  # /etc/os-release of the image
        subprocess.run(["tmux", "send-keys", "-t", session, "exit 3", "Enter"], check=True)
        shell_mod._wait_for(session, r"SHELL-EXITED-3")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
