"""The command line's assembly: the Typer app and which module adds each command.

Each command group is one module of this package with a ``register(app)``; only the
module of the command being run is imported (:func:`load`).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import typer

from slurmc.cli.common import SUGGEST_COMMANDS

_app = typer.Typer(
    suggest_commands=SUGGEST_COMMANDS,
    name="slurmc",
    help="Run containerized jobs on Slurm clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

#: The commands other modules add, and which module adds each. Only the module of the
#: command being run is imported (`slurmc cache ls` does not import the jobs or venv
#: commands, `slurmc run` none of them); help, completion and typos get all of them.
GROUPS = {
    "cache": "cache",
    "images": "cache",
    "inspect": "inspect",
    "shell": "shell",
    "build": "venv",
    "venv": "venv",
    "jobs": "jobs",
    "info": "info",
}
#: registered first for every other command (help lists commands, then groups, in this
#: order); `slurmc run` and `slurmc site` register only themselves
_ALWAYS = ("run", "site")
_ORDER = ("cache", "inspect", "shell", "venv", "jobs", "info")
_registered: set[str] = set()


def load(command: str | None = None) -> typer.Typer:
    """The app with the module of *command* registered (all modules for None, an
    option, or a name that is not a command: they need the whole command list)."""
    if command in ("run", "site"):
        wanted: tuple[str, ...] = (command,)  # `slurmc run` builds no other command's options
    else:
        wanted = (*_ALWAYS, *((GROUPS[command],) if command in GROUPS else _ORDER))
    for name in (*_ALWAYS, *_ORDER):  # always in this order, so help lists commands the same way
        if name in wanted and name not in _registered:
            importlib.import_module(f"{__package__}.{name}").register(_app)
            _registered.add(name)
    return _app


COMPLETE_VAR = "_SLURMC_COMPLETE"


def main(argv: list[str]) -> None:
    """The console script: register what *argv* needs, then let Typer run it."""
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:  # shell completion (slurmc.cli.completion): every command
        # Click's scripts say SHELL_ACTION (bash_complete), Typer reads ACTION_SHELL
        shell, _, action = instruction.partition("_")
        if shell in ("bash", "zsh", "fish"):
            os.environ[COMPLETE_VAR] = f"{action}_{shell}"
        load(None)
    else:
        load(argv[0] if argv and not argv[0].startswith("-") else None)
    _app()


def __getattr__(name: str) -> Any:
    if name == "app":  # `from slurmc.cli.app import app`: the whole app (tests, tools)
        return load()
    raise AttributeError(name)


def _version(value: bool) -> None:
    if value:
        from slurmc import __version__

        typer.echo(f"slurmc {__version__}")
        raise typer.Exit()


@_app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run containerized jobs on Slurm clusters."""
