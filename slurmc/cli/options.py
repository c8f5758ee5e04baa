"""What ``slurmc run`` and ``slurmc shell`` share: their options, declared once, and the
steps from those options to a planned job (the project file's defaults, the request,
the image pulled and the venv unpacked)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click
import typer
from typer.core import TyperCommand

from slurmc.cli import completion
from slurmc.cli.common import notify, progress_ticker

if TYPE_CHECKING:
    from slurmc.core.job import Job
    from slurmc.core.plan import JobRequest

# ---- the options both commands take ---------------------------------------------------------

SITE = typer.Option(
    None,
    "--site",
    help="Site name or site file (else $SLURMC_SITE).",
    autocompletion=completion.sites,
)
PARTITION = typer.Option(None, "--partition", "-p", autocompletion=completion.partitions)
ACCOUNT = typer.Option(None, "--account", "-A")
CPUS_PER_TASK = typer.Option(None, "--cpus-per-task", "-c")
GPUS_PER_NODE = typer.Option(None, "--gpus-per-node")
#: sbatch's --gpus is refused with a pointer to --gpus-per-node (refuse_gpus)
GPUS = typer.Option(None, "--gpus", "--gpu", hidden=True)
MEM = typer.Option(None, "--mem")
TIME = typer.Option(None, "--time", "-t")
JOB_NAME = typer.Option(None, "--job-name", "-J")
SBATCH_ARG = typer.Option(
    None, "--sbatch-arg", help="Any other sbatch option, as --option=value (repeatable)."
)
BIND = typer.Option(None, "--bind", "-B", help="SRC[:DST[:OPTS]] (repeatable).")
ENV = typer.Option(None, "--env", help="NAME=VALUE in the container (repeatable).")
CONDA = typer.Option(None, "--conda/--no-conda", help="Force $WITH_CONDA activation on or off.")
VENV = typer.Option(
    None,
    "--venv",
    help="A venv (slurmc venv create) or .sqsh file, at /user-software.",
    autocompletion=completion.venvs,
)
CACHE_DIR = typer.Option(
    None, "--cache-dir", help="Image cache root, instead of the site's ($SLURMC_CACHE_DIR)."
)
CATALOG = typer.Option(
    None, "--catalog", help="Read-only image catalog, instead of the site's ($SLURMC_CATALOG)."
)
REFRESH = typer.Option(
    False, "--refresh", help="Pull the cached image again first if its tag moved."
)


def given(**values: Any) -> dict[str, Any]:
    """The options as typed, keyed as the project file's keys (``job_name`` ->
    ``job-name``), the repeatable ones as tuples."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in _REPEATABLE:
            value = tuple(value or ())
        out[name.replace("_", "-")] = value
    return out


_REPEATABLE = {"sbatch_arg", "bind", "env", "cache_dir", "catalog"}


def prepared_job(
    request: JobRequest,
    site: str | None,
    *,
    dry_run: bool = False,
    note: str | None = None,
    refresh: bool = False,
) -> tuple[Job, dict[str, str]]:
    """Plan a job, pull its image and unpack its venv (unless dry run), decide conda
    activation, and print the job's notes: the steps `run` and `shell` share. *note*
    (which project file supplied which values) goes first among them."""
    from slurmc.usecases import submit as launch
    from slurmc.values import replace

    environ = dict(os.environ)
    cwd = os.getcwd()
    job = launch.plan_for_site(request, site, environ, cwd)
    if note:
        job = replace(job, notes=(note, *job.notes))
    if not dry_run:
        job = launch.ensure_image(
            job, environ, notify=notify, ticker=progress_ticker(), refresh=refresh
        )
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
) -> JobRequest:
    """The JobRequest of `run` or `shell` from their options (keyed as the project file's
    keys, after with_project); *flags*: interactive, pty."""
    from slurmc.core.plan import JobRequest
    from slurmc.core.project import RESOURCES

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
