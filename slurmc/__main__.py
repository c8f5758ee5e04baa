"""Entry point of the ``slurmc`` console script and ``python -m slurmc``.

``slurmc --help`` and ``slurmc --version`` answer without importing the CLI
framework: on a login node they are typed often and must cost about what
Python's own start costs. The help text is Typer's own rendering, stored in
:mod:`slurmc.cli.help`; a test fails when it differs from what Typer prints.

Every other command is a short-lived process that imports about 200 modules, so two
things Python does for long-lived programs are skipped (docs/performance.md):

- the cyclic garbage collector runs rarely (:data:`GC_THRESHOLD`): the imports alone
  would start it about 200 times, to find almost nothing (reference counting frees
  what a command drops);
- at the end, after what ``sys.exit`` would run (``atexit`` handlers, flushing
  ``stdout`` and ``stderr``), the process leaves with :func:`os._exit` instead of
  tearing down every module one by one: about 12 ms of each command. Where that is
  not certainly the same (another thread still running, output that cannot be
  flushed), the normal exit is taken.
"""

from __future__ import annotations

import os
import sys

#: gc.set_threshold for a command: a young-generation collection every 100,000
#: allocations instead of 700 (a long `run --wait` still collects, and memory stays
#: bounded); the older generations as Python sets them.
GC_THRESHOLD = (100_000, 10, 10)


def _fast_path(argv: list[str]) -> bool:
    if argv == ["--version"]:
        from slurmc import __version__

        sys.stdout.write(f"slurmc {__version__}\n")
        return True
    if argv == ["--help"]:
        try:
            columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
        except (ValueError, OSError):
            columns = 80
        if columns >= 80:  # the stored text is Typer's rendering at full width
            from slurmc.cli.help import TOP_HELP

            sys.stdout.write(TOP_HELP)
            return True
    return False


def _exit_status(code: str | int | None) -> int:
    """What Python makes of ``SystemExit(code)`` (printing a message, as it would)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _leave(code: str | int | None) -> None:
    """Exit as ``sys.exit(code)`` would, without tearing down the modules."""
    import threading

    if threading.active_count() > 1:  # Python would wait for it (or stop a daemon)
        sys.exit(code)
    import atexit

    status = _exit_status(code)
    atexit._run_exitfuncs()  # what Python runs first at exit (weakref.finalize too)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: Python reports it, with status 120
        sys.exit(status)
    os._exit(status & 0xFF)


def _drop_script_directory() -> None:
    """Take the console script's own directory (``.../bin``) off the module search path,
    as ``python -P`` would: nothing there is a module of slurmc's, yet every later
    import would look there first (a ``stat`` each, about 120 for a run: costly on a
    shared file system), and a stray ``typing.py`` next to the script would be imported
    in place of the real one."""
    if sys.path and not getattr(sys.flags, "safe_path", False) and sys.argv and sys.argv[0]:
        here = os.path.dirname(os.path.realpath(sys.argv[0]))
        if sys.path[0] == here and not os.path.isfile(os.path.join(here, "__main__.py")):
            del sys.path[0]


def main() -> None:
    if _fast_path(sys.argv[1:]):
        return
    _drop_script_directory()
    import gc

    gc.set_threshold(*GC_THRESHOLD)
    from slurmc.cli.app import main as cli_main

    try:
        cli_main(sys.argv[1:])
    except SystemExit as exc:
        _leave(exc.code)
    _leave(0)


if __name__ == "__main__":
    main()
