"""slurmc shell, driven through a real pseudo-terminal (tmux), on the real cluster."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid

import pytest

from .conftest import wait_job

pytestmark = pytest.mark.cluster


def _screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def _wait_for(session: str, pattern: str, timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, _screen(session))
        if m:
            return m
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} never appeared:\n{_screen(session)}")


def test_shell_in_the_container_on_a_gpu_node_then_release(cluster, images, tmp_path):
    session = f"slurmc-{uuid.uuid4().hex[:8]}"
    exe = shutil.which("slurmc")
    assert exe and shutil.which("tmux")
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in {"PATH": os.environ["PATH"], "SLURM_CONF": cluster, "USER": "root"}.items()
    )
    cmd = (
        f"cd {shlex.quote(str(tmp_path))} && env {env} {exe} shell --site devcluster "
        f"-p small-g --gpus-per-node 1 {images.lumi_sqfs}; echo SHELL-EXITED-$?; sleep 60"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", cmd], check=True
    )
    try:
        _wait_for(session, r"bash-\d")  # the container's prompt
        subprocess.run(
            [
                "tmux",
                "send-keys",
                "-t",
                session,
                'echo "job=$SLURM_JOB_ID env=$CONDA_DEFAULT_ENV gpu=$ROCR_VISIBLE_DEVICES '
                'pty=$([ -t 0 ] && echo yes)"; grep PRETTY /etc/os-release',
                "Enter",
            ],
            check=True,
        )
        m = _wait_for(session, r"job=(\d+) env=(\w*) gpu=(\S*) pty=(\w*)")
        job, conda_env, gpu, pty = m.groups()
        assert (conda_env, gpu, pty) == ("pytorch", "0", "yes")
        _wait_for(session, "slurmc test image")  # /etc/os-release of the image
        subprocess.run(["tmux", "send-keys", "-t", session, "exit 3", "Enter"], check=True)
        _wait_for(session, r"SHELL-EXITED-3")
        assert wait_job(job, timeout=30)["JobState"] in ("COMPLETED", "FAILED")  # released
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
