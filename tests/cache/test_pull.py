"""pull_into's orchestration (lock, temp name, validation, publication) with a scripted
runtime whose "pull" is a shell command; real pulls from a registry are in tests/integration."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurmc.cache.layout import scan
from slurmc.cache.manage import add, entries, plan_prune, verify
from slurmc.cache.provenance import read_meta
from slurmc.cache.pull import PullOptions, clean_leftovers, pull_into
from slurmc.errors import CacheError, PullError
from slurmc.grammar.refs import parse_reference
from slurmc.runtimes.base import Step
from slurmc.runtimes.charliecloud import Charliecloud

REF = parse_reference("127.0.0.1:5999/team/img:v1")


@dataclass(frozen=True)
class ScriptedRuntime(Charliecloud):
    """Charliecloud's naming and format; the pull is `sh -c SCRIPT sh DEST`."""

    script: str = ""

    def pull_steps(self, executable, ref, dest, scratch, login=None):
        return [Step(["sh", "-c", self.script, "sh", dest])]


@pytest.fixture(scope="module")
def squashfs(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("rootfs")
    (src / "hello.txt").write_text("hello\n")
    out = tmp_path_factory.mktemp("img") / "img.sqfs"
    subprocess.run(
        ["mksquashfs", str(src), str(out), "-noappend", "-quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


OPTS = PullOptions(executable="unused", check_network=False, lock_timeout=60)


def test_publishes_readable_files_in_setgid_directories(tmp_path, squashfs):
    rt = ScriptedRuntime(script=f'cp {squashfs} "$1"; chmod 600 "$1"')
    old = os.umask(0o077)
    try:
        path = pull_into(REF, rt, str(tmp_path / "root"), OPTS, {})
    finally:
        os.umask(old)
    assert path == str(tmp_path / "root" / "127.0.0.1:5999" / "team" / "img:v1.sqfs")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # never a 0600 image
    d = os.path.dirname(path)
    assert os.stat(d).st_mode & stat.S_ISGID and stat.S_IMODE(os.stat(d).st_mode) == 0o2775
    assert [e.ref for e in scan(str(tmp_path / "root"), rt)] == [REF]
    # no lock, no temp left behind; the image's provenance beside it, group-readable
    assert sorted(os.listdir(d)) == [".img:v1.sqfs.meta.json", "img:v1.sqfs"]
    assert stat.S_IMODE(os.stat(os.path.join(d, ".img:v1.sqfs.meta.json")).st_mode) == 0o644
    meta = read_meta(path)
    assert meta["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert meta["size"] == os.path.getsize(path) and meta["source"] == "pulled"


def test_truncated_pull_publishes_nothing(tmp_path, squashfs):
    rt = ScriptedRuntime(script=f'head -c 100 {squashfs} > "$1"')
    with pytest.raises(CacheError, match=r"not a SquashFS|truncated"):
        pull_into(REF, rt, str(tmp_path), OPTS, {})
    assert os.listdir(tmp_path / "127.0.0.1:5999" / "team") == []


def test_failing_pull_command(tmp_path):
    rt = ScriptedRuntime(script="echo 'manifest unknown' >&2; exit 1")
    with pytest.raises(PullError, match=r"manifest unknown.*nothing was published"):
        pull_into(REF, rt, str(tmp_path), OPTS, {})
    assert os.listdir(tmp_path / "127.0.0.1:5999" / "team") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_full_file_system_is_a_clear_error_with_nothing_published(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(tiny)], check=True)
    try:
        rt = ScriptedRuntime(script='head -c 2000000 /dev/urandom > "$1"')
        with pytest.raises(CacheError, match="no space left"):
            pull_into(REF, rt, str(tiny), OPTS, {})
        leftovers = [f for _, _, fs in os.walk(tiny) for f in fs]
        assert leftovers == []
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def _pull(root: str, script: str, out: mp.Queue) -> None:
    out.put(pull_into(REF, ScriptedRuntime(script=script), root, OPTS, {}))


def test_sixteen_concurrent_callers_cause_one_pull(tmp_path, squashfs):
    count = tmp_path / "pulls"
    script = f'echo x >> {count}; sleep 0.5; cp {squashfs} "$1"'
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_pull, args=(str(tmp_path / "root"), script, out)) for _ in range(16)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    paths = {out.get() for _ in procs}
    assert len(paths) == 1 and count.read_text() == "x\n"
    assert Path(paths.pop()).read_bytes() == squashfs.read_bytes()


def test_leftovers_of_dead_pulls_are_cleaned(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    import socket

    name = "img:v1.sqfs"
    stale = tmp_path / f".{name}.pulling.{socket.gethostname()}.{dead.pid}.abcd1234.sqfs"
    stale.write_bytes(b"partial")
    live = tmp_path / f".{name}.pulling.{socket.gethostname()}.{os.getpid()}.abcd1234.sqfs"
    live.write_bytes(b"partial")
    assert clean_leftovers(str(tmp_path), name) == [str(stale)]
    assert live.exists() and not stale.exists()


def test_prune_finds_the_provenance_temp_file_a_killed_pull_left(tmp_path):
    """Killed between publishing and writing its .meta.json: the temp file of a dead
    process on this host is a leftover; a live writer's, or another host's, is not."""
    from slurmc.cache.lock import HOST
    from slurmc.cache.manage import stale_leftovers
    from slurmc.cache.provenance import write_meta

    dead = subprocess.Popen(["true"])
    dead.wait()
    d = tmp_path / "team"
    d.mkdir()
    dead_tmp = d / f".img:v1.sqfs.meta.{HOST}.{dead.pid}.abcd1234.tmp"
    live_tmp = d / f".img:v1.sqfs.meta.{HOST}.{os.getpid()}.abcd1234.tmp"
    other_host = d / f".img:v1.sqfs.meta.elsewhere.{dead.pid}.abcd1234.tmp"
    for f in (dead_tmp, live_tmp, other_host):
        f.write_text("{")
    fd = os.open(d, os.O_RDONLY)
    try:
        write_meta(fd, "img:v1.sqfs", {"source": "added"})  # the name it writes, matched
    finally:
        os.close(fd)
    assert stale_leftovers([str(tmp_path)]) == [str(dead_tmp)]
    assert read_meta(str(d / "img:v1.sqfs")) == {"source": "added"}


def test_add_checks_the_format_and_lists(tmp_path, squashfs):
    rt = Charliecloud()
    root = str(tmp_path / "root")
    path = add(str(squashfs), "team/img:v2", rt, root, {})
    assert path.endswith("team/img:v2.sqfs")
    with pytest.raises(CacheError, match="already cached"):
        add(str(squashfs), "team/img:v2", rt, root, {})
    junk = tmp_path / "junk.sif"
    junk.write_bytes(b"\0" * 200)
    with pytest.raises(CacheError, match="not an image"):
        add(str(junk), "team/img:v3", rt, root, {})
    found = entries([root], rt)
    assert [str(e.ref) for e in found] == ["team/img:v2"]
    assert verify(found, rt) == []
    Path(path).write_bytes(squashfs.read_bytes()[:200])  # corrupt it
    assert len(verify(found, rt)) == 1


def test_prune_plan_is_least_recently_used_first(tmp_path, squashfs):
    rt = Charliecloud()
    root = str(tmp_path)
    for i, used in enumerate([300, 100, 200]):
        p = add(str(squashfs), f"a/img:{i}", rt, root, {})
        os.utime(p, (used, used))
    all_entries = entries([root], rt)
    size = all_entries[0].size
    doomed = plan_prune(all_entries, max_size=size, older_than_days=None, now=400).remove
    assert [e.ref.tag for e in doomed] == ["1", "2"]
    doomed = plan_prune(all_entries, max_size=None, older_than_days=250 / 86400, now=400).remove
    assert [e.ref.tag for e in doomed] == ["1"]


def test_progress_ticker_is_called_during_a_long_pull(tmp_path, squashfs):
    ticks: list[tuple[float, int]] = []
    rt = ScriptedRuntime(script=f'head -c 1000 /dev/zero > "$1"; sleep 2.3; cp {squashfs} "$1"')
    pull_into(REF, rt, str(tmp_path), OPTS, {}, ticker=lambda t, n: ticks.append((t, n)))
    assert len(ticks) >= 2 and ticks[0][1] >= 1000 and ticks[-1][0] > ticks[0][0]


def test_listing_inverts_every_runtime_naming(tmp_path):
    from slurmc.cache.layout import ref_from_relpath
    from slurmc.runtimes import get_runtime

    for kind in ("apptainer", "charliecloud", "enroot", "podman"):
        rt = get_runtime(kind)
        for text in ("ubuntu", "127.0.0.1:5443/a/b:v1", "a/b@sha256:" + "c" * 64):
            ref = parse_reference(text)
            back = ref_from_relpath(rt.cache_relpath(ref), rt)
            assert back is not None and back.canonical() == ref.canonical()


def test_two_holders_of_one_lock_are_harmless(tmp_path, squashfs, monkeypatch):
    """The stale-break window of lock.py (ImageLock._break) can leave two holders:
    each pulls into its own private directory and publishes a checked image by
    rename, so the result is one complete image and nothing left behind."""
    import threading

    from slurmc.cache.lock import ImageLock

    monkeypatch.setattr(ImageLock, "acquire", lambda self: True)  # no exclusion at all
    rt = ScriptedRuntime(script=f'head -c 4096 {squashfs} > "$1"; sleep 0.3; cat {squashfs} > "$1"')
    root = tmp_path / "root"
    results, errors = [], []

    def pull():
        try:
            results.append(pull_into(REF, rt, str(root), OPTS, {}))
        except Exception as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(results) == 2 and results[0] == results[1]
    assert Path(results[0]).read_bytes() == squashfs.read_bytes()
    left = [p.name for p in Path(results[0]).parent.iterdir()]
    assert left == [".img:v1.sqfs.meta.json", "img:v1.sqfs"]


def test_a_reference_whose_temp_names_pass_255_bytes_is_refused_before_writing(tmp_path):
    ref = parse_reference("127.0.0.1:5999/team/img:" + "t" * 120)
    long = parse_reference("127.0.0.1:5999/team/" + "n" * 235 + ":v1")
    rt = ScriptedRuntime(script="exit 1")
    with pytest.raises(CacheError, match=r"past the 255-byte limit.*shorter tag"):
        pull_into(long, rt, str(tmp_path / "root"), OPTS, {})
    assert not (tmp_path / "root").exists()
    with pytest.raises(PullError):
        pull_into(ref, rt, str(tmp_path / "root2"), OPTS, {})


def test_a_link_at_an_image_name_is_not_an_image_and_is_replaced_by_a_pull(tmp_path, squashfs):
    from slurmc.cache.layout import lookup

    root = tmp_path / "root"
    rt = ScriptedRuntime(script=f'cp {squashfs} "$1"')
    rel = rt.cache_relpath(REF)
    victim = tmp_path / "private"
    victim.write_text("mine")
    victim.chmod(0o600)
    (root / rel).parent.mkdir(parents=True)
    (root / rel).symlink_to(victim)
    assert lookup(str(root), rel) == str(root / rel)  # a link of your own (or root's) is used
    os.lchown(root / rel, 4242, -1)  # another user's link is not
    assert lookup(str(root), rel) is None
    assert [e.relpath for e in scan(str(root), rt)] == []
    path = pull_into(REF, rt, str(root), OPTS, {})
    assert not Path(path).is_symlink() and Path(path).read_bytes() == squashfs.read_bytes()
    assert victim.read_text() == "mine" and stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_a_link_in_place_of_a_directory_is_refused_in_one_line(tmp_path, squashfs):
    root = tmp_path / "root"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "127.0.0.1:5999").symlink_to(elsewhere)
    os.lchown(root / "127.0.0.1:5999", 4242, -1)  # another user's link
    rt = ScriptedRuntime(script=f'cp {squashfs} "$1"')
    with pytest.raises(CacheError, match=r"is not a directory.*never follows links"):
        pull_into(REF, rt, str(root), OPTS, {})
    assert list(elsewhere.iterdir()) == []


def test_a_reused_pid_does_not_keep_a_dead_pulls_leftover(tmp_path):
    """pids are reused (pid_max is 32768 here): a live process that started after the
    leftover was last written is not the pull that wrote it."""
    import subprocess
    import time as _time

    from slurmc.cache.lock import HOST
    from slurmc.cache.workdir import clean_leftovers

    newer = subprocess.Popen(["sleep", "30"])
    try:
        old = tmp_path / f".img:v1.sqfs.pulling.{HOST}.{newer.pid}.abcd1234"
        old.mkdir()
        (old / "partial").write_bytes(b"x")
        then = _time.time() - 60
        os.utime(old, (then, then))
        mine = tmp_path / f".img:v1.sqfs.pulling.{HOST}.{os.getpid()}.abcd5678"
        mine.mkdir()  # this process, alive and older than its leftover: kept
        removed = clean_leftovers(str(tmp_path), "img:v1.sqfs")
        assert removed == [str(old)]
        assert not old.exists() and mine.exists()
    finally:
        newer.kill()
        newer.wait()
