"""Entry point of the ``slurmc`` console script and ``python -m slurmc``.

``slurmc --help`` and ``slurmc --version`` answer without importing the CLI
framework: on a login node they are typed often and must cost about what
Python's own start costs. The help text is Typer's own rendering, stored in
:mod:`slurmc.cli.help`; a test fails when it differs from what Typer prints.
"""

from __future__ import annotations

import os
import sys


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


def main() -> None:
    if _fast_path(sys.argv[1:]):
        return
    from slurmc.cli.app import main as cli_main

    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
