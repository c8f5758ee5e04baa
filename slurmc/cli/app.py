"""The command line: parse, call the core, print. Nothing else lives here."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer

from slurmc.cli import completion
from slurmc.cli.common import (
    SUGGEST_COMMANDS,
    ImageFirstCommand,
    handle_errors,
    image_and_command,
    notify,
    prepared_job,
    print_json,
    refuse_gpus,
    request_from,
    with_project,
)
from slurmc.errors import SlurmcError

_app = typer.Typer(
    suggest_commands=SUGGEST_COMMANDS,
    name="slurmc",
    help="Run containerized jobs on Slurm clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
site_app = typer.Typer(
    suggest_commands=SUGGEST_COMMANDS,
    help="Inspect and check site configurations.",
    no_args_is_help=True,
)
_app.add_typer(site_app, name="site")

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
_ORDER = ("cache", "inspect", "shell", "venv", "jobs", "info")
_registered: set[str] = set()


def load(command: str | None = None) -> typer.Typer:
    """The app with the module of *command* registered (all modules for None, an
    option, or a name that is not a command: they need the whole command list)."""
    wanted = (
        (GROUPS[command],) if command in GROUPS else () if command in ("run", "site") else _ORDER
    )
    for name in _ORDER:  # always in this order, so help lists commands the same way
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


@_app.command(
    # Everything after IMAGE is the command, options included (as with srun,
    # `apptainer exec` and `docker run`): slurmc's own options come before IMAGE.
    context_settings={"allow_interspersed_args": False},
    no_args_is_help=True,
    cls=ImageFirstCommand,
)
@handle_errors
def run(
    image: str = typer.Argument(
        None,
        autocompletion=completion.images,
        help="Image: a registry reference (ns/repo:tag), a .sif/.sqsh/.sqfs file, or a URI "
        "(else the project's slurmc.toml, else the site's default image: then start with --).",
    ),
    command: list[str] = typer.Argument(
        None, help="The command to run: every word after IMAGE (an optional `--` first)."
    ),
    site: str = typer.Option(
        None,
        "--site",
        help="Site name or site file (else $SLURMC_SITE).",
        autocompletion=completion.sites,
    ),
    partition: str = typer.Option(None, "--partition", "-p", autocompletion=completion.partitions),
    account: str = typer.Option(None, "--account", "-A"),
    nodes: str = typer.Option(None, "--nodes", "-N"),
    ntasks_per_node: str = typer.Option(None, "--ntasks-per-node"),
    cpus_per_task: str = typer.Option(None, "--cpus-per-task", "-c"),
    gpus_per_node: str = typer.Option(None, "--gpus-per-node"),
    gpus: str = typer.Option(None, "--gpus", "--gpu", hidden=True),
    mem: str = typer.Option(None, "--mem"),
    time: str = typer.Option(None, "--time", "-t"),
    job_name: str = typer.Option(None, "--job-name", "-J"),
    output: str = typer.Option(None, "--output", "-o"),
    error: str = typer.Option(None, "--error", "-e"),
    array: str = typer.Option(None, "--array", "-a"),
    dependency: str = typer.Option(None, "--dependency", "-d"),
    comment: str = typer.Option(None, "--comment"),
    sbatch_arg: list[str] = typer.Option(
        None, "--sbatch-arg", help="Any other sbatch option, as --option=value (repeatable)."
    ),
    bind: list[str] = typer.Option(None, "--bind", "-B", help="SRC[:DST[:OPTS]] (repeatable)."),
    env: list[str] = typer.Option(None, "--env", help="NAME=VALUE in the container (repeatable)."),
    conda: bool = typer.Option(
        None, "--conda/--no-conda", help="Force $WITH_CONDA activation on or off."
    ),
    venv: str = typer.Option(
        None,
        "--venv",
        help="A venv (slurmc venv create) or .sqsh file, at /user-software.",
        autocompletion=completion.venvs,
    ),
    cache_dir: list[str] = typer.Option(
        None, "--cache-dir", help="Image cache root, instead of the site's ($SLURMC_CACHE_DIR)."
    ),
    catalog: list[str] = typer.Option(
        None, "--catalog", help="Read-only image catalog, instead of the site's ($SLURMC_CATALOG)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the script; submit nothing."),
    interactive: bool = typer.Option(
        False, "--interactive", help="Run under salloc in the foreground; exit with its status."
    ),
    parsable: bool = typer.Option(False, "--parsable", help="Print only the job id."),
    wait: bool = typer.Option(
        False, "--wait", help="Stream the job's output until it ends; exit with its status."
    ),
) -> None:
    """Run COMMAND in IMAGE on the cluster: slurmc run [OPTIONS] IMAGE [--] COMMAND..."""
    from slurmc.usecases import submit as launch

    refuse_gpus(gpus)
    image_given, command = image_and_command(image, command)
    given = {
        "site": site,
        "image": image_given,
        "partition": partition,
        "account": account,
        "nodes": nodes,
        "ntasks-per-node": ntasks_per_node,
        "cpus-per-task": cpus_per_task,
        "gpus-per-node": gpus_per_node,
        "mem": mem,
        "time": time,
        "job-name": job_name,
        "output": output,
        "error": error,
        "comment": comment,
        "sbatch-arg": tuple(sbatch_arg or ()),
        "bind": tuple(bind or ()),
        "env": tuple(env or ()),
        "conda": conda,
        "venv": venv,
        "cache-dir": tuple(cache_dir or ()),
        "catalog": tuple(catalog or ()),
    }
    o, note = with_project(given, os.getcwd())
    request = request_from(
        o,
        command,
        extra_resources={"array": array, "dependency": dependency},
        interactive=interactive,
    )
    if wait and (dry_run or interactive or array):
        from slurmc.errors import ValidationError

        raise ValidationError(
            "--wait follows one batch job: not with --dry-run, --interactive or --array"
        )
    job, environ = prepared_job(request, o["site"], dry_run=dry_run, note=note)
    if dry_run:
        text = launch.render_step(job) if interactive else launch.render_batch(job)
        sys.stdout.write(text)
        return
    if interactive:
        raise typer.Exit(launch.run_interactive(job, environ, os.getcwd()))
    result = launch.submit(job, environ, os.getcwd(), notify=notify)
    for warning in result.warnings:
        typer.echo(f"slurmc: warning: {warning}", err=True)
    if parsable:
        typer.echo(result.submission.job_id)
    else:  # with --wait, stdout is the job's output alone
        where = f" on cluster {result.submission.cluster}" if result.submission.cluster else ""
        typer.echo(
            f"Submitted job {result.submission.job_id}{where} (site {job.site.name})", err=wait
        )
        if result.output:
            typer.echo(f"Output: {result.output}", err=wait)
    if wait:
        from slurmc.cli import jobs as cli_jobs

        raise typer.Exit(cli_jobs.wait_for(result, environ))


@site_app.command("list")
@handle_errors
def site_list(
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """List the known sites and where each is defined."""
    from slurmc.core.sites import load_site_file, site_files

    rows: list[dict[str, str | None]] = []
    for name, path in sorted(site_files(dict(os.environ)).items()):
        row: dict[str, str | None]
        try:
            row = {"name": name, "description": load_site_file(path).description, "file": str(path)}
        except SlurmcError as exc:
            row = {"name": name, "description": None, "file": str(path), "error": str(exc)}
        rows.append(row)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        desc = row["description"] if "error" not in row else f"INVALID: {row['error']}"
        typer.echo(f"{row['name']:<14} {desc}  [{row['file']}]")


@site_app.command("show")
@handle_errors
def site_show(
    name: str = typer.Argument(
        None, help="Site name or file (default: resolved).", autocompletion=completion.sites
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Show a site's settings, as slurmc reads them."""
    from slurmc.core.sites import resolve_site

    site = resolve_site(name, dict(os.environ))
    from slurmc.usecases.submit import describe_site, site_as_dict

    if as_json:
        print_json(site_as_dict(site))
    else:
        typer.echo(describe_site(site))


@site_app.command("check")
@handle_errors
def site_check(path: str = typer.Argument(..., help="A site TOML file.")) -> None:
    """Validate a site file; exit non-zero with the first problem found."""
    from slurmc.core.sites import load_site_file

    site = load_site_file(path)
    typer.echo(f"{path}: ok (site {site.name}, runtime {site.runtime})")
