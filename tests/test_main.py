"""The start-up fast path answers exactly what the full CLI would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from slurmc import _help
from slurmc.cli import app


def test_stored_help_is_typers_own_rendering():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}, prog_name="slurmc")
    assert result.exit_code == 0
    if os.environ.get("SLURMC_UPDATE_GOLDEN"):
        Path(_help.__file__).write_text(
            '"""Typer\'s rendering of ``slurmc --help``, for the start-up fast path.\n\n'
            'Regenerate: SLURMC_UPDATE_GOLDEN=1 pytest tests/test_main.py"""\n\n'
            "TOP_HELP = (\n"
            + "".join(f"    {line!r}\n" for line in result.output.splitlines(keepends=True))
            + ")\n"
        )
    assert result.output == _help.TOP_HELP


def test_fast_help_and_version_do_not_import_the_cli_framework():
    code = (
        "import sys; sys.argv = ['slurmc', '{arg}']; from slurmc.__main__ import main; main(); "
        "assert 'typer' not in sys.modules and 'jinja2' not in sys.modules, 'imported'"
    )
    for arg in ("--help", "--version"):
        r = subprocess.run(
            [sys.executable, "-c", code.format(arg=arg)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "100"},
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("Usage: slurmc") or r.stdout.startswith("slurmc ")


def test_narrow_terminal_falls_back_to_typer():
    r = subprocess.run(
        [sys.executable, "-m", "slurmc", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "60"},
    )
    assert r.returncode == 0 and "Usage:" in r.stdout
