"""What every command shares: one-line errors (never a traceback), progress lines, JSON."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import typer

from slurmc.errors import SlurmcError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"slurmc: error: {message}", err=True)
    return typer.Exit(code)


#: Click 8.4+ suggests a close command name itself ("Did you mean 'list'?"); Typer adds
#: its own on top, so with both the hint came twice. Typer's only where Click has none.
SUGGEST_COMMANDS = not hasattr(click.exceptions, "NoSuchCommand")


def human_size(n: float) -> str:
    """Bytes as people read them: 512B, 1.5K, 20.3M, 2.1G."""
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def notify(msg: str) -> None:
    """A progress line on stderr (clearing a progress display on a terminal first)."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    typer.echo(msg, err=True)


def progress_ticker() -> Any:
    """A one-line progress display on a terminal; nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None

    def tick(elapsed: float, nbytes: int) -> None:
        sys.stderr.write(f"\r\033[K  {elapsed:5.0f} s  {human_size(nbytes)} written")
        sys.stderr.flush()

    return tick


def print_json(value: Any) -> None:
    """Every --json document slurmc prints: one indentation (2), a final newline."""
    import json

    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def handle_errors(func: F) -> F:
    """Turn domain errors into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SlurmcError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper  # type: ignore[return-value]
