"""Two real users of one group, for the tests of a shared cache under attack.

The test setup creates them (``groupadd``, ``useradd``; the test run is root, as in
CI) and runs their commands with ``runuser -u USER --``. Their Python is Debian's
``/usr/bin/python3`` (root's own interpreter may live under /root, mode 0700, where
other users cannot run it) with this checkout and the test venv's packages on
PYTHONPATH; both are readable by everyone.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GROUP = "slurmc-hg"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
VICTIM, ATTACKER = "slurmc-alice", "slurmc-bob"


def _python() -> str:
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("no python3 other users can run")


@dataclass(frozen=True)
class Member:
    name: str
    uid: int
    home: Path


@dataclass(frozen=True)
class Group:
    gid: int
    base: Path  # a fresh directory both users can reach
    victim: Member
    attacker: Member
    python: str
    pythonpath: str

    def run(
        self, who: Member, argv: list[str], timeout: float = 60, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(who.home),
            "USER": who.name,
            "PYTHONPATH": self.pythonpath,
            "LANG": "C.UTF-8",
        }
        return subprocess.run(
            [RUNUSER, "-u", who.name, "--", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,  # type: ignore[arg-type]
        )

    def popen(self, who: Member, argv: list[str]) -> subprocess.Popen[str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(who.home), "PYTHONPATH": self.pythonpath}
        return subprocess.Popen(
            [RUNUSER, "-u", who.name, "--", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def py(self, who: Member, code: str, *args: str, timeout: float = 60) -> dict:
        r = self.run(who, [self.python, "-c", code, *args], timeout=timeout)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])


def _ensure_user(name: str, gid: int) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--gid", str(gid), "--shell", "/bin/sh", name],
            check=True,
        )
        return pwd.getpwnam(name).pw_uid


@pytest.fixture(scope="session")
def group() -> Iterator[Group]:
    assert os.geteuid() == 0, "the shared-cache tests create two users: run them as root (CI)"
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True)
        gid = grp.getgrnam(GROUP).gr_gid
    base = Path(tempfile.mkdtemp(prefix="slurmc-hostile-", dir="/var/tmp"))
    base.chmod(0o755)
    members = []
    for name in (VICTIM, ATTACKER):
        uid = _ensure_user(name, gid)
        home = base / "home" / name
        home.mkdir(parents=True)
        os.chown(home, uid, gid)
        home.chmod(0o700)
        members.append(Member(name, uid, home))
    purelib = sysconfig.get_paths()["purelib"]
    g = Group(gid, base, members[0], members[1], _python(), f"{REPO}:{purelib}")
    try:
        yield g
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def shared_cache(group: Group, tmp_path: Path) -> Path:
    """A fresh cache root: root-owned, the group's, setgid and group-writable (2775)."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=group.base))
    os.chown(cache, 0, group.gid)
    cache.chmod(0o2775)
    return cache
