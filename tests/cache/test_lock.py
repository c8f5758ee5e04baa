"""The link-count lock: exclusive across processes, breaks dead holders, honours live ones."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import time
from pathlib import Path

import pytest

from slurmc.cache.lock import HOST, ImageLock, read_owner
from slurmc.errors import CacheError, LockTimeoutError


def _worker(lock_path: str, counter: str, log: str, n: int) -> None:
    for _ in range(n):
        with ImageLock(lock_path, timeout=60, poll=0.001):
            # a non-atomic read-modify-write: only safe under mutual exclusion
            value = int(Path(counter).read_text())
            with open(log, "a") as fh:
                fh.write(f"in {os.getpid()}\n")
            time.sleep(0.001)
            with open(log, "a") as fh:
                fh.write(f"out {os.getpid()}\n")
            Path(counter).write_text(str(value + 1))


def test_mutual_exclusion_across_16_processes(tmp_path):
    lock, counter, log = tmp_path / ".x.lock", tmp_path / "n", tmp_path / "log"
    counter.write_text("0")
    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_worker, args=(str(lock), str(counter), str(log), 10)) for _ in range(16)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert counter.read_text() == "160"
    lines = log.read_text().splitlines()
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):  # never interleaved
        assert enter.startswith("in ") and leave == "out " + enter[3:]
    assert not lock.exists()


def test_lock_of_a_dead_process_on_this_host_is_broken(tmp_path):
    lock = tmp_path / ".img.lock"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(
        json.dumps({"host": HOST, "pid": dead.pid, "since": time.time(), "token": "old"})
    )
    t0 = time.monotonic()
    with ImageLock(str(lock), timeout=5) as held:
        assert held.owner is not None and read_owner(str(lock)).token == held.owner.token
    assert time.monotonic() - t0 < 2


def test_live_lock_from_another_host_is_honoured_until_its_lifetime(tmp_path):
    lock = tmp_path / ".img.lock"
    lock.write_text(
        json.dumps({"host": "other-node", "pid": 1, "since": time.time(), "token": "theirs"})
    )
    waits = []
    with pytest.raises(LockTimeoutError, match="host other-node, pid 1"):
        ImageLock(str(lock), timeout=0.5, lifetime=60, on_wait=waits.append).acquire()
    assert waits and waits[0].host == "other-node"
    assert read_owner(str(lock)).token == "theirs"  # never taken, never broken
    old = time.time() - 120
    os.utime(lock, (old, old))  # no heartbeat for 2 minutes: abandoned
    with ImageLock(str(lock), timeout=5, lifetime=60):
        pass


def test_holder_heartbeat_keeps_a_long_hold_alive(tmp_path):
    lock = tmp_path / ".img.lock"
    with ImageLock(str(lock), lifetime=0.4):
        before = lock.stat().st_mtime
        time.sleep(0.5)
        assert lock.stat().st_mtime > before


def test_read_only_directory_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permissions: use a read-only mount instead
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], check=True)
    try:
        with pytest.raises(CacheError, match=r"read-only file system|not writable"):
            ImageLock(str(ro / ".x.lock"), timeout=1).acquire()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)
