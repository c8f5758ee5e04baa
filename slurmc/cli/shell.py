"""``slurmc shell``: an interactive shell inside the container on an allocated node."""

from __future__ import annotations

import os

import typer

from slurmc.cli import completion
from slurmc.cli.common import handle_errors, prepared_job, refuse_gpus, request_from, with_project


@handle_errors
def shell(
    image: str = typer.Argument(
        None,
        autocompletion=completion.images,
        help="Image: reference, file, or catalog:PACKAGE (else the project's slurmc.toml).",
    ),
    site: str = typer.Option(
        None,
        "--site",
        help="Site name or site file (else $SLURMC_SITE).",
        autocompletion=completion.sites,
    ),
    partition: str = typer.Option(None, "--partition", "-p", autocompletion=completion.partitions),
    account: str = typer.Option(None, "--account", "-A"),
    cpus_per_task: str = typer.Option(None, "--cpus-per-task", "-c"),
    gpus_per_node: str = typer.Option(None, "--gpus-per-node"),
    gpus: str = typer.Option(None, "--gpus", "--gpu", hidden=True),
    mem: str = typer.Option(None, "--mem"),
    time: str = typer.Option(None, "--time", "-t"),
    job_name: str = typer.Option(None, "--job-name", "-J"),
    sbatch_arg: list[str] = typer.Option(
        None, "--sbatch-arg", help="Any other allocation option, as --option=value."
    ),
    bind: list[str] = typer.Option(None, "--bind", "-B", help="SRC[:DST[:OPTS]] (repeatable)."),
    env: list[str] = typer.Option(None, "--env", help="NAME=VALUE in the container (repeatable)."),
    conda: bool = typer.Option(None, "--conda/--no-conda", help="Force $WITH_CONDA on or off."),
    venv: str = typer.Option(
        None,
        "--venv",
        help="A venv (slurmc venv create), at /user-software.",
        autocompletion=completion.venvs,
    ),
    cache_dir: list[str] = typer.Option(None, "--cache-dir", help="Image cache root."),
    catalog: list[str] = typer.Option(None, "--catalog", help="Image catalog directory."),
    shell_cmd: str = typer.Option("bash", "--shell", help="The shell to start in the container."),
) -> None:
    """Open a shell in IMAGE on an allocated node (salloc + srun --pty); exit releases it."""
    refuse_gpus(gpus)
    from slurmc.usecases import submit as launch

    given = {
        "site": site,
        "image": image,
        "partition": partition,
        "account": account,
        "cpus-per-task": cpus_per_task,
        "gpus-per-node": gpus_per_node,
        "mem": mem,
        "time": time,
        "job-name": job_name,
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
        (shell_cmd,),
        extra_resources={"job_name": o["job-name"] or "slurmc-shell"},
        interactive=True,
        pty=True,
    )
    job, environ = prepared_job(request, o["site"], note=note)
    raise typer.Exit(launch.run_interactive(job, environ, os.getcwd()))


def register(app: typer.Typer) -> None:
    app.command("shell")(shell)
