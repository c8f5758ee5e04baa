"""The link-count lock: exclusive across processes, breaks dead holders, honours live ones."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from slurmc.cache.lock import HOST, ImageLock, pid_alive, read_owner
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
    t0 = time.monotonic()
    with ImageLock(str(lock), timeout=5, lifetime=0.6):  # unchanged for 0.6 s: abandoned
        assert time.monotonic() - t0 >= 0.6


@pytest.mark.parametrize("skew", [-7200, 7200], ids=["mtime-2h-old", "mtime-2h-ahead"])
def test_staleness_is_judged_on_the_waiters_clock_not_the_servers_mtime(tmp_path, skew):
    lock = tmp_path / ".img.lock"
    lock.write_text(json.dumps({"host": "other", "pid": 7, "since": 0, "token": "t"}))
    os.utime(lock, (time.time() + skew, time.time() + skew))  # a file server's clock is off
    with pytest.raises(LockTimeoutError):  # seen for 0.5 s only: not stale whatever the mtime
        ImageLock(str(lock), timeout=0.5, lifetime=1.5).acquire()
    t0 = time.monotonic()
    with ImageLock(str(lock), timeout=5, lifetime=1.0):
        assert 1.0 <= time.monotonic() - t0 < 3


def test_a_heartbeat_seen_by_the_waiter_keeps_the_lock(tmp_path):
    lock = tmp_path / ".img.lock"
    lock.write_text(json.dumps({"host": "other", "pid": 7, "since": 0, "token": "t"}))
    stop = threading.Event()

    def beat():
        n = 0
        while not stop.wait(0.1):
            n += 1
            os.utime(lock, ns=(n * 10**9, n * 10**9))  # changes, even to a past time

    t = threading.Thread(target=beat)
    t.start()
    try:
        with pytest.raises(LockTimeoutError):
            ImageLock(str(lock), timeout=1.5, lifetime=0.5).acquire()
    finally:
        stop.set()
        t.join()
    assert read_owner(str(lock)).token == "t"


def test_a_live_holder_on_this_host_is_honoured_and_not_signalled(tmp_path):
    holder = subprocess.Popen(["sleep", "30"])
    try:
        lock = tmp_path / ".img.lock"
        lock.write_text(json.dumps({"host": HOST, "pid": holder.pid, "since": 0, "token": "live"}))
        with pytest.raises(LockTimeoutError, match=f"pid {holder.pid}"):
            ImageLock(str(lock), timeout=0.6, lifetime=0.1).acquire()
        time.sleep(0.1)
        assert holder.poll() is None  # os.kill(pid, 0) only: a real signal would end sleep
        assert read_owner(str(lock)).token == "live"
    finally:
        holder.kill()
        holder.wait()


def test_eperm_from_kill_means_alive(monkeypatch):
    def kill(pid, sig):
        assert sig == 0
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    assert pid_alive(4242) is True


def test_a_dead_pid_is_not_alive():
    p = subprocess.Popen(["true"])
    p.wait()
    assert pid_alive(p.pid) is False
    assert pid_alive(2**40) is False  # not a pid: no OverflowError


def test_release_leaves_a_lock_whose_token_is_not_ours(tmp_path):
    lock = tmp_path / ".img.lock"
    held = ImageLock(str(lock), timeout=5)
    held.acquire()
    lock.unlink()  # broken by someone who judged us dead, and taken again
    lock.write_text(json.dumps({"host": "x", "pid": 3, "since": 0, "token": "new"}))
    held.release()
    assert read_owner(str(lock)).token == "new"


def test_heartbeat_is_stopped_before_the_lock_is_unlinked(tmp_path, monkeypatch):
    lock = tmp_path / ".img.lock"
    held = ImageLock(str(lock), timeout=5, lifetime=0.2)
    held.acquire()
    beat = held._beat
    assert beat is not None and beat.is_alive()
    seen = []
    real_unlink = os.unlink

    def unlink(path, *a, **kw):
        if str(path).endswith(".img.lock"):
            seen.append(beat.is_alive())
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr(os, "unlink", unlink)
    held.release()
    assert seen == [False]
    assert not lock.exists()


@pytest.mark.parametrize("restore", [False, True], ids=["stale", "replaced-meanwhile"])
def test_breaking_a_stale_lock_leaves_no_broken_file(tmp_path, restore):
    lock = tmp_path / ".img.lock"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(json.dumps({"host": HOST, "pid": dead.pid, "since": 0, "token": "old"}))
    waiter = ImageLock(str(lock), timeout=5)
    if restore:  # the lock changes between the judgement and the rename: it is put back
        owner = read_owner(str(lock))
        lock.unlink()
        lock.write_text(json.dumps({"host": "b", "pid": 5, "since": 0, "token": "fresh"}))
        waiter._break(owner)
        assert read_owner(str(lock)).token == "fresh"
    else:
        with waiter:
            pass
    assert [p.name for p in tmp_path.iterdir() if ".broken." in p.name] == []


def test_waiters_poll_at_least_every_half_second(tmp_path):
    lock = tmp_path / ".img.lock"
    holder = ImageLock(str(lock), timeout=5)
    holder.acquire()
    got = []

    def wait():
        with ImageLock(str(lock), timeout=30):
            got.append(time.monotonic())

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(3)  # long enough for the back-off to reach its ceiling
    released = time.monotonic()
    holder.release()
    t.join(10)
    assert got and got[0] - released < 0.6


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOTSUP])
def test_a_file_system_without_hard_links_fails_at_once(tmp_path, monkeypatch, code):
    def link(*a, **kw):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", link)
    t0 = time.monotonic()
    with pytest.raises(CacheError, match=r"cannot hold slurmc's lock.*file system with hard links"):
        ImageLock(str(tmp_path / ".img.lock"), timeout=60).acquire()
    assert time.monotonic() - t0 < 1
    assert list(tmp_path.iterdir()) == []  # the unique file is gone too


def test_a_lock_that_is_a_link_to_a_fifo_neither_hangs_nor_is_followed(tmp_path):
    fifo = tmp_path / "victim.fifo"
    os.mkfifo(fifo)
    lock = tmp_path / ".img.lock"
    lock.symlink_to(fifo)
    assert read_owner(str(lock)).pid == -1  # foreign, read without opening the FIFO
    with ImageLock(str(lock), timeout=5, lifetime=0.3):
        assert not lock.is_symlink()
    assert fifo.exists() and not fifo.is_symlink()


def test_damaged_lock_contents_are_foreign_not_a_crash(tmp_path):
    lock = tmp_path / ".img.lock"
    for text in ["[" * 100_000, '{"host": 1, "pid": "2", "since": [], "token": null}', "[]"]:
        lock.write_text(text)
        assert read_owner(str(lock)).pid == -1


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


# ---- what the mutation run of cache/lock.py showed still unchecked (issue 10) -------------


def _owner_json(**over):
    data = {"host": "elsewhere", "pid": 4242, "since": 1.0, "token": "t" * 32, **over}
    return json.dumps(data)


def test_an_owner_file_is_read_up_to_4096_bytes(tmp_path):
    """The owner is read with one capped read: 4096 bytes are whole, 4097 are not."""
    lock = tmp_path / ".img.lock"
    base = len(_owner_json(token=""))
    lock.write_text(_owner_json(token="t" * (4096 - base)))
    assert lock.stat().st_size == 4096 and read_owner(str(lock)).pid == 4242
    lock.write_text(_owner_json(token="t" * (4097 - base)))
    assert read_owner(str(lock)).pid == -1  # cut at 4096: not JSON, a foreign file


@pytest.mark.parametrize(
    "over", [{"host": 5}, {"pid": "4242"}, {"pid": True}, {"since": "1"}, {"token": 7}]
)
def test_one_field_of_the_wrong_type_makes_the_owner_foreign(tmp_path, over):
    lock = tmp_path / ".img.lock"
    lock.write_text(_owner_json(**over))
    assert read_owner(str(lock)).pid == -1


def test_the_lock_directory_named_in_errors():
    assert ImageLock("/a/b/.x.lock")._directory == "/a/b"
    assert ImageLock(".x.lock")._directory == "."


def test_the_lock_file_is_group_writable(tmp_path):
    old = os.umask(0)
    try:
        lock = tmp_path / ".img.lock"
        with ImageLock(str(lock)):
            assert lock.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_a_missing_directory_fails_at_once_not_after_the_timeout(tmp_path):
    t = time.monotonic()
    with pytest.raises(CacheError, match="No such file or directory") as exc:
        ImageLock(str(tmp_path / "nope" / ".x.lock"), timeout=5).acquire()
    assert not isinstance(exc.value, LockTimeoutError)
    assert time.monotonic() - t < 2


def test_a_holder_on_this_host_is_judged_by_its_pid_even_pid_1(tmp_path):
    """pid 1 is alive on this host: its lock is never stale, however old; the waiter
    gives up naming it (not "an unknown holder")."""
    lock = tmp_path / ".img.lock"
    lock.write_text(_owner_json(host=HOST, pid=1))
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with pytest.raises(LockTimeoutError, match=f"host {HOST}, pid 1,"):
        ImageLock(str(lock), timeout=0.6, lifetime=0.05).acquire()
    assert lock.exists()


def test_a_foreign_lock_file_names_no_holder_when_the_waiter_gives_up(tmp_path):
    lock = tmp_path / ".img.lock"
    lock.write_text("not an owner")
    with pytest.raises(LockTimeoutError, match=r"held by an unknown holder\)"):
        ImageLock(str(lock), timeout=0.3, lifetime=600).acquire()


def test_pid_0_on_this_host_is_not_a_process_to_ask(tmp_path):
    """pid 0 names no process (kill(0, 0) would ask our own group): such a lock is judged
    as one from elsewhere, stale once unchanged for its lifetime."""
    lock = tmp_path / ".img.lock"
    lock.write_text(_owner_json(host=HOST, pid=0))
    got = ImageLock(str(lock), timeout=5, lifetime=0.2)
    assert got.acquire() is True
    got.release()


def test_a_lost_link_reply_counts_when_the_link_was_made(tmp_path, monkeypatch):
    """NFS: link(2) may report an error although it linked; a link count of 2 tells."""
    real = os.link

    def link_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError(errno.EIO, "lost reply")

    monkeypatch.setattr(os, "link", link_then_fail)
    lock = ImageLock(str(tmp_path / ".img.lock"), timeout=1)
    assert lock.acquire() is True
    lock.release()


@pytest.mark.parametrize(("pid", "who"), [(1, "host elsewhere, pid 1,"), (-1, "an unknown holder")])
def test_a_stale_lock_that_cannot_be_moved_says_who_holds_it(tmp_path, monkeypatch, pid, who):
    """In a sticky directory another user's stale lock cannot be renamed away: one line
    naming the holder (or none, for a foreign file), not a wait or a traceback."""
    lock = tmp_path / ".img.lock"
    lock.write_text(_owner_json(pid=pid))

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "rename", refuse)
    with pytest.raises(CacheError, match="cannot be removed by you") as exc:
        ImageLock(str(lock), timeout=5, lifetime=0.1).acquire()
    assert who in str(exc.value)


def test_the_timeout_names_no_holder_for_pid_0(tmp_path):
    lock = tmp_path / ".img.lock"
    lock.write_text(_owner_json(pid=0))
    with pytest.raises(LockTimeoutError, match=r"held by an unknown holder\)"):
        ImageLock(str(lock), timeout=0.3, lifetime=600).acquire()
