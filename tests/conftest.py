"""Shared fixtures. Fixtures are named by role; the real-cluster ones live in
tests/integration/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Values that must survive every path they can take (model: submitit's weird_tmp_path).
HOSTILE = [
    "it's",
    'say "hi"',
    "$HOME",
    "${PATH}",
    "`id`",
    "$(id)",
    "a\\b",
    "; echo pwned",
    "| cat /etc/passwd",
    "two words",
    "tab\there",
    "new\nline",
    "\n#SBATCH --partition=evil",
    "#SBATCH --partition=evil",
    "cr\rreturn",
    "*",
    "~",
    "-",
    "--",
    "",
    "ünïcödé ✓",
    "!event",
    "a'b\"c$d`e\\f",
]


@pytest.fixture(params=HOSTILE, ids=[repr(h)[1:-1][:20] or "empty" for h in HOSTILE])
def hostile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no site chosen and a private config home."""
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PATH": "/usr/bin:/bin",
        "SLURM_CONF": str(tmp_path / "no-slurm.conf"),
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skip is a gap, not a pass: fail the run when anything skipped.

    Set SLURMC_ALLOW_SKIP=1 to look at a partial run on a machine without the real parts.
    """
    import os

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and not os.environ.get("SLURMC_ALLOW_SKIP") and exitstatus == 0:
        if reporter:
            reporter.write_line(f"slurmc: {skipped} test(s) skipped; a skip is a gap: failing")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
