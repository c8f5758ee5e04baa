"""What every command shares: one-line errors, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import typer
from typer.core import TyperCommand

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


def prepared_job(
    request: Any, site: str | None, *, dry_run: bool = False, note: str | None = None
) -> tuple[Any, Any]:
    """Plan a job, pull its image and unpack its venv (unless dry run), decide conda
    activation, and print the job's notes: the steps `run` and `shell` share. *note*
    (which project file supplied which values) goes first among them."""
    from dataclasses import replace

    from slurmc.usecases import submit as launch

    environ = dict(os.environ)
    cwd = os.getcwd()
    job = launch.plan_for_site(request, site, environ, cwd)
    if note:
        job = replace(job, notes=(note, *job.notes))
    if not dry_run:
        job = launch.ensure_image(job, environ, notify=notify, ticker=progress_ticker())
        job = launch.ensure_venv(
            job, environ, cwd, warn=lambda w: typer.echo(f"slurmc: warning: {w}", err=True)
        )
    job = launch.apply_image_facts(job, environ)
    for note in job.notes:
        typer.echo(f"note: {note}", err=True)
    return job, environ


def command_after_image(words: list[str] | None) -> list[str]:
    """The command: every word after IMAGE, less one leading ``--``.

    A command cannot start with ``-``; such a word is one of slurmc's own options
    typed after IMAGE, and running it would submit a job that fails (or, for
    ``--dry-run``, a job the user did not want): refuse it, saying where it goes.
    """
    words = list(words or ())
    if words and words[0] == "--":
        words = words[1:]
    if words and words[0].startswith("-"):
        from slurmc.errors import ValidationError

        raise ValidationError(
            f"{words[0]!r} after IMAGE: slurmc's own options go before IMAGE "
            "(slurmc run [OPTIONS] IMAGE [--] COMMAND...); everything after IMAGE is the command"
        )
    return words


def refuse_gpus(value: str | None) -> None:
    """``--gpus``/``--gpu`` (sbatch's total over the job) is not one of slurmc's options:
    say which one is, and how to pass sbatch's own."""
    if value is None:
        return
    from slurmc.errors import ValidationError

    raise ValidationError(
        f"--gpus: slurmc asks for GPUs per node: --gpus-per-node {value}; "
        f"for sbatch's own total use --sbatch-arg=--gpus={value}"
    )


class ImageFirstCommand(TyperCommand):
    """A command whose first word is IMAGE, unless a ``--`` comes before any word.

    ``slurmc run -- python train.py`` gives no IMAGE (the project's, or the site's
    default, is used) while ``slurmc run IMAGE python train.py`` does. Click drops that
    ``--`` before the command sees its words, so note here whether it came first."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for p in self.params
            if isinstance(p, click.Option) and not p.is_flag and not p.count
            for name in (*p.opts, *p.secondary_opts)
        }
        i, dashdash = 0, False
        while i < len(args):
            word = args[i]
            if word == "--":
                dashdash = True
                break
            if not word.startswith("-") or word == "-":
                break
            i += 2 if word in takes_value else 1
        ctx.meta["slurmc.no_image"] = dashdash
        return super().parse_args(ctx, args)


def image_and_command(image: str | None, words: list[str] | None) -> tuple[str | None, list[str]]:
    """IMAGE and COMMAND from the positional words (see :class:`ImageFirstCommand`)."""
    every = ([image] if image is not None else []) + list(words or ())
    if click.get_current_context().meta.get("slurmc.no_image"):
        return None, every
    if not every:
        return None, []
    return every[0], command_after_image(every[1:])


def with_project(cli: dict[str, Any], cwd: str) -> tuple[dict[str, Any], str | None]:
    """slurmc run's options, keyed as the project file's keys, completed from the
    project's file: the command line wins. Returns them and a note naming the file and
    the values it supplied (None when it supplied nothing)."""
    from slurmc.core.project import KEYS, project_defaults

    project = project_defaults(cwd, os.environ)
    merged = dict(cli)
    used = []
    for key in KEYS:
        if key not in cli or project.get(key) is None:
            continue
        if key == "env":
            given = {item.split("=", 1)[0] for item in cli.get("env") or ()}
            extra = tuple(e for e in project.get("env") if e.split("=", 1)[0] not in given)
            if extra:
                merged["env"] = (*extra, *(cli.get("env") or ()))
                used.append("env")
        elif cli[key] is None or cli[key] == () or cli[key] == []:
            merged[key] = project.get(key)
            used.append(key)
    note = f"from {project.file}: {', '.join(used)}" if used else None
    return merged, note


def request_from(
    options: dict[str, Any],
    command: list[str] | tuple[str, ...],
    *,
    extra_resources: dict[str, str | None] | None = None,
    **flags: Any,
) -> Any:
    """The JobRequest of `run` or `shell` from their options (keyed as the project file's
    keys, after with_project); *flags*: interactive, pty."""
    from slurmc.core.project import RESOURCES
    from slurmc.usecases.submit import JobRequest

    resources = {field: options[key] for key, field in RESOURCES.items() if key in options}
    resources.update(extra_resources or {})
    conda = options["conda"]
    return JobRequest(
        image=options["image"] or "",
        command=tuple(command),
        resources=resources,
        extra=options["sbatch-arg"],
        binds=options["bind"],
        env=options["env"],
        conda=None if conda is None else ("with_conda" if conda else "none"),
        cache_dirs=options["cache-dir"],
        catalogs=options["catalog"],
        venv=options["venv"],
        **flags,
    )
