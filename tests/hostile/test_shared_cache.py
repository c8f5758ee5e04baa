"""A member of the cache's group attacks another member's pull, for real.

Two uids made by the test setup share a setgid (2775) cache directory. The attacker
races the victim's ``pull_into``: it renames the victim's private pull directory away
and plants a symbolic link in its place, renames links over the temp name, plants a
link where the registry directory will be made, and a link as the lock. Whatever
happens, nothing foreign is published, nothing is written outside the root, the
victim's own files keep their mode, and the pull either succeeds with the right
image or fails with one line.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Group

pytestmark = pytest.mark.hostile

NAME = "img:v1.sqfs"
REL = f"127.0.0.1:5999/team/{NAME}"
#: the provenance file the pull writes beside the image (slurmc.cache.provenance)
META_REL = "/".join([*REL.split("/")[:-1], "." + REL.split("/")[-1] + ".meta.json"])

VICTIM_PULL = r"""
import json, sys
from dataclasses import dataclass
from slurmc.cache.pull import PullOptions, pull_into
from slurmc.errors import SlurmcError
from slurmc.grammar.refs import parse_reference
from slurmc.runtimes.base import Step
from slurmc.runtimes.charliecloud import Charliecloud

cache, src, pause = sys.argv[1], sys.argv[2], sys.argv[3]

@dataclass(frozen=True)
class SlowCopy(Charliecloud):
    def pull_steps(self, executable, ref, dest, scratch, login=None):
        script = 'sleep "$3"; cp "$2" "$1"; sleep "$3"'
        return [Step(["sh", "-c", script, "sh", dest, src, pause])]

opts = PullOptions(executable="x", check_network=False, lock_timeout=30, lock_lifetime=1.0)
try:
    path = pull_into(parse_reference("127.0.0.1:5999/team/img:v1"), SlowCopy(), cache, opts, {})
    print(json.dumps({"ok": True, "path": path}))
except SlurmcError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""

ATTACKER = r"""
import json, os, sys, time
cache, target, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
moved = swapped = 0
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    for d, dirs, files in os.walk(cache):
        for name in dirs + files:
            if ".pulling." not in name or name.endswith(".moved") or name.startswith(".evil"):
                continue
            p = os.path.join(d, name)
            n += 1
            evil = os.path.join(d, f".evil{n}")
            try:
                os.symlink(target, evil)
                os.rename(evil, p)  # a link renamed over the temp name
                swapped += 1
                continue
            except OSError:
                pass
            try:
                os.rename(p, p + ".moved")  # the private directory renamed away...
                os.rename(evil, p)  # ...and a link to the target in its place
                moved += 1
            except OSError:
                pass
            if os.path.lexists(evil):
                os.unlink(evil)
    time.sleep(0.0005)
print(json.dumps({"moved": moved, "swapped": swapped}))
"""


@pytest.fixture(scope="module")
def squashfs(group: Group) -> Path:
    src = group.base / "rootfs"
    src.mkdir(exist_ok=True)
    (src / "hello.txt").write_text("hello\n")
    out = group.base / "img.sqfs"
    if not out.exists():
        subprocess.run(
            ["mksquashfs", str(src), str(out), "-noappend", "-quiet"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    out.chmod(0o644)
    return out


@pytest.fixture
def secret(group: Group) -> Path:
    """A private file of the victim's, 0600, in the victim's 0700 home."""
    for p in group.victim.home.iterdir():
        p.unlink()
    s = group.victim.home / "secret"
    s.write_text("alice's private notes\n")
    os.chown(s, group.victim.uid, group.gid)
    s.chmod(0o600)
    return s


@pytest.fixture
def drop(group: Group, tmp_path: Path) -> Path:
    """A world-writable directory outside the cache, where a redirected pull would land."""
    d = group.base / f"drop-{tmp_path.name}"
    d.mkdir()
    d.chmod(0o1777)
    return d


def _assert_untouched(group: Group, secret: Path, drop: Path) -> None:
    assert sorted(p.name for p in group.victim.home.iterdir()) == ["secret"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text() == "alice's private notes\n"
    assert list(drop.iterdir()) == []


def _assert_published_or_failed(result: dict, cache: Path, squashfs: Path, group: Group) -> None:
    final = cache / REL
    if result["ok"]:
        st = final.lstat()
        assert stat.S_ISREG(st.st_mode), "a link was published"
        assert st.st_uid == group.victim.uid
        assert stat.S_IMODE(st.st_mode) == 0o644
        assert final.read_bytes() == squashfs.read_bytes()
    else:
        assert "\n" not in result["error"]
        assert not final.exists() or final.is_symlink() or final.stat().st_uid != group.victim.uid


def _victim_leftovers(cache: Path, group: Group) -> list[str]:
    """What the victim left behind besides the image: nothing but its directories."""
    left = []
    for d, dirs, files in os.walk(cache):
        for n in dirs + files:
            p = Path(d, n)
            if n.endswith(".moved") and p.is_dir() and not any(p.iterdir()):
                continue  # renamed away by the attacker before the victim could open it
            if p.lstat().st_uid == group.victim.uid and not (
                p.is_dir() and not p.is_symlink() and not n.startswith(".")
            ):
                left.append(str(p.relative_to(cache)))
    return sorted(left)


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize("where", ["victim-home", "victim-file", "drop"])
def test_racing_links_over_the_pull_never_redirect_it(
    group, shared_cache, squashfs, secret, drop, where, round_
):
    target = {"victim-home": group.victim.home, "victim-file": secret, "drop": drop}[where]
    attacker = group.popen(
        group.attacker, [group.python, "-c", ATTACKER, str(shared_cache), str(target), "3"]
    )
    result = group.py(group.victim, VICTIM_PULL, str(shared_cache), str(squashfs), "0.4")
    out, err = attacker.communicate(timeout=30)
    assert attacker.returncode == 0, err
    attack = json.loads(out.strip().splitlines()[-1])
    assert attack["moved"] + attack["swapped"] >= 1  # the race really was run
    _assert_untouched(group, secret, drop)
    _assert_published_or_failed(result, shared_cache, squashfs, group)
    # through /proc/PID/fd the pull is not disturbed; a swap between mkdir and open is
    # retried under a new name
    assert result["ok"], result
    assert _victim_leftovers(shared_cache, group) == sorted([REL, META_REL])


def test_a_link_planted_as_the_registry_directory_is_not_followed(
    group, shared_cache, squashfs, secret, drop
):
    for target in (group.victim.home, drop):
        link = shared_cache / "127.0.0.1:5999"
        r = group.run(group.attacker, ["ln", "-sfn", str(target), str(link)])
        assert r.returncode == 0, r.stderr
        result = group.py(group.victim, VICTIM_PULL, str(shared_cache), str(squashfs), "0")
        assert not result["ok"]
        assert "is not a directory" in result["error"] and "never follows links" in result["error"]
        _assert_untouched(group, secret, drop)
        link.unlink()
    result = group.py(group.victim, VICTIM_PULL, str(shared_cache), str(squashfs), "0")
    _assert_published_or_failed(result, shared_cache, squashfs, group)
    assert result["ok"]
    for d in (shared_cache / "127.0.0.1:5999", shared_cache / "127.0.0.1:5999" / "team"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o2775 and d.stat().st_gid == group.gid


def test_links_planted_as_the_image_and_the_lock_are_replaced_not_followed(
    group, shared_cache, squashfs, secret, drop
):
    d = shared_cache / "127.0.0.1:5999" / "team"
    r = group.run(group.attacker, ["sh", "-c", f'umask 002; mkdir -p "{d}"'])
    assert r.returncode == 0, r.stderr
    for name in (NAME, f".{NAME}.lock"):
        r = group.run(group.attacker, ["ln", "-s", str(secret), str(d / name)])
        assert r.returncode == 0, r.stderr
    result = group.py(group.victim, VICTIM_PULL, str(shared_cache), str(squashfs), "0")
    _assert_untouched(group, secret, drop)
    _assert_published_or_failed(result, shared_cache, squashfs, group)
    assert result["ok"], (
        result
    )  # the lock link is foreign: broken after lock_lifetime, not followed
    assert not (d / f".{NAME}.lock").exists()


@pytest.fixture
def sticky_cache(shared_cache: Path) -> Path:
    shared_cache.chmod(0o3775)
    return shared_cache


def _slurmc(group: Group, who, *args: str) -> subprocess.CompletedProcess[str]:
    return group.run(who, [group.python, "-m", "slurmc", *args], timeout=120)


def test_in_a_sticky_cache_others_cannot_prune_or_remove_your_images(group, sticky_cache, squashfs):
    result = group.py(group.victim, VICTIM_PULL, str(sticky_cache), str(squashfs), "0")
    assert result["ok"], result
    final = sticky_cache / REL
    for d in (final.parent, final.parent.parent):  # made sticky like the root
        assert stat.S_IMODE(d.stat().st_mode) == 0o3775
    # a damaged image of the victim's, for verify --remove-bad
    bad = final.parent / "bad:v1.sqfs"
    r = group.run(group.victim, ["sh", "-c", f'head -c 200 "{final}" > "{bad}"; chmod 644 "{bad}"'])
    assert r.returncode == 0, r.stderr
    common = ["--site", "devcluster", "--cache-dir", str(sticky_cache)]
    r = _slurmc(group, group.attacker, "cache", "prune", *common, "--max-size", "0")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 2 and all("only its owner" in e for e in errors), r.stderr
    assert final.exists() and bad.exists()
    r = _slurmc(group, group.attacker, "cache", "verify", *common, "--remove-bad")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "cannot remove" in r.stderr
    assert bad.exists()
    r = _slurmc(group, group.attacker, "cache", "rm", *common, "127.0.0.1:5999/team/img:v1")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "only its owner" in r.stderr
    r = _slurmc(group, group.victim, "cache", "prune", *common, "--max-size", "0")
    assert r.returncode == 0, r.stderr
    assert not final.exists() and not bad.exists()  # the owner can


def test_in_a_sticky_cache_a_dead_pull_of_another_user_is_reported_not_waited_on(
    group, sticky_cache, squashfs
):
    result = group.py(group.victim, VICTIM_PULL, str(sticky_cache), str(squashfs), "0")
    assert result["ok"], result
    d = (sticky_cache / REL).parent
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = d / ".other:v1.sqfs.lock"
    owner = {"host": socket.gethostname(), "pid": dead.pid, "since": 0, "token": "dead"}
    r = group.run(group.victim, ["sh", "-c", f"echo '{json.dumps(owner)}' > '{lock}'"])
    assert r.returncode == 0, r.stderr
    code = VICTIM_PULL.replace("img:v1", "other:v1")
    t0 = time.monotonic()
    result = group.py(group.attacker, code, str(sticky_cache), str(squashfs), "0")
    assert not result["ok"] and time.monotonic() - t0 < 20
    assert "cannot be removed by you" in result["error"] and "sticky" in result["error"]
    assert lock.exists()
