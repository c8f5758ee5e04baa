"""The start-up fast path answers exactly what the full CLI would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from slurmc.cli import help as _help
from slurmc.cli.app import app


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


def _every_command() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_command_has_a_home_for_lazy_loading():
    """A command added to the app but not to GROUPS would vanish from `slurmc NAME`."""
    from slurmc.cli.app import GROUPS

    assert set(_every_command()) == {*GROUPS, "run", "site"}


def test_each_command_alone_is_the_same_command():
    """`slurmc NAME ...` registers only NAME's module: its help (options, arguments,
    subcommands) is what the whole app says, and no other command module is imported."""
    from slurmc.cli.app import GROUPS

    env = {**os.environ, "COLUMNS": "100"}
    whole = "import sys; sys.argv[0] = 'slurmc'; from slurmc.cli.app import app; app()"
    for name in _every_command():
        full = subprocess.run(
            [sys.executable, "-c", whole, name, "--help"], capture_output=True, text=True, env=env
        )
        code = (
            "import sys; sys.argv = ['slurmc', *sys.argv[1:]]\n"
            "from slurmc.cli.app import main\n"  # __main__.main would leave with os._exit
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"groups = {sorted(set(GROUPS.values()))!r}\n"
            "mods = sorted(m for m in sys.modules if m.rpartition('.')[::2] in "
            "[('slurmc.cli', g) for g in groups])\n"
            "print('MODULES', mods, file=sys.stderr)\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, name, "--help"], capture_output=True, text=True, env=env
        )
        assert full.returncode == 0 and full.stdout.startswith("Usage: slurmc"), full.stderr
        assert r.stdout == full.stdout, name
        loaded = r.stderr.rsplit("MODULES ", 1)[1].strip()
        expected = [f"slurmc.cli.{GROUPS[name]}"] if name in GROUPS else []
        assert loaded == repr(expected), (name, loaded)


def _main_code(body: str) -> str:
    """A program running the console script's main() with the CLI replaced by *body*
    (the body of a function of argv)."""
    return (
        "import atexit, sys, threading, time\n"
        "import slurmc.cli.app as app\n"
        f"def fake(argv):\n{body}\n"
        "app.main = fake\n"
        "sys.argv = ['slurmc', 'run']\n"
        "from slurmc.__main__ import main\n"
        "main()\n"
        "print('main returned', file=sys.stderr)\n"
    )


def _main_with(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _main_code(body)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


def test_leaving_runs_exit_handlers_and_flushes_output(tmp_path):
    r = _main_with(
        "    atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
        "    sys.stdout.write('y' * 200000)\n"
        "    sys.exit(3)",
        tmp_path,
    )
    assert r.returncode == 3
    assert r.stdout == "y" * 200000
    assert r.stderr == "handler ran\n"  # and main() never returned


def test_leaving_keeps_pythons_exit_statuses(tmp_path):
    assert _main_with("    return None", tmp_path).returncode == 0
    assert _main_with("    sys.exit(None)", tmp_path).returncode == 0
    text = _main_with("    sys.exit('no such site')", tmp_path)
    assert (text.returncode, text.stderr) == (1, "no such site\n")
    crash = _main_with("    raise RuntimeError('boom')", tmp_path)
    assert crash.returncode == 1 and "RuntimeError: boom" in crash.stderr


def test_leaving_waits_for_a_running_thread(tmp_path):
    """With a thread still running, the normal exit (which waits for it) is taken."""
    r = _main_with(
        "    def late():\n"
        "        time.sleep(0.3)\n"
        "        open('late', 'w').write('done')\n"
        "    threading.Thread(target=late).start()\n"
        "    sys.exit(4)",
        tmp_path,
    )
    assert r.returncode == 4
    assert (tmp_path / "late").read_text() == "done"


def test_leaving_reports_a_closed_pipe_as_python_does(tmp_path):
    """`slurmc jobs | head -n 1`: the reader is gone when the output is flushed at exit;
    the status and message are Python's own (non-zero, 'BrokenPipeError')."""
    body = "    time.sleep(0.5)\n    sys.stdout.write('y' * 100)\n    sys.exit(0)"
    plain = f"import sys, time\ndef fake(argv):\n{body}\nfake([])\n"
    results = []
    for code in (plain, _main_code(body)):
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the child writes
        err = proc.stderr.read().decode()
        results.append((proc.wait(timeout=60), "BrokenPipeError" in err))
    assert results[0][0] != 0 and results[0][1]
    assert results[1] == results[0]


def test_a_module_beside_the_console_script_is_not_imported(tmp_path):
    """The console script's directory is off the module search path (as `python -P`
    does): a stray tomllib.py in ~/.local/bin does not replace the real one."""
    import shutil

    exe = shutil.which("slurmc")
    assert exe, "the slurmc console script is not installed"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(exe, bindir / "slurmc")
    (bindir / "tomllib.py").write_text("raise SystemExit('the stray tomllib.py was imported')\n")
    r = subprocess.run(
        [str(bindir / "slurmc"), "site", "list"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "lumi" in r.stdout
