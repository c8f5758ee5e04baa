"""``slurmc shell``: an interactive shell inside the container on an allocated node."""

from __future__ import annotations

import os

import typer

from .cli_common import handle_errors, prepared_job, refuse_gpus


@handle_errors
def shell(
    image: str = typer.Argument(..., help="Image: reference, file, or catalog:PACKAGE."),
    site: str = typer.Option(None, "--site", help="Site name or site file (else $SLURMC_SITE)."),
    partition: str = typer.Option(None, "--partition", "-p"),
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
        None, "--venv", help="A venv (slurmc venv create), at /user-software."
    ),
    cache_dir: list[str] = typer.Option(None, "--cache-dir", help="Image cache root."),
    catalog: list[str] = typer.Option(None, "--catalog", help="Image catalog directory."),
    shell_cmd: str = typer.Option("bash", "--shell", help="The shell to start in the container."),
) -> None:
    """Open a shell in IMAGE on an allocated node (salloc + srun --pty); exit releases it."""
    refuse_gpus(gpus)
    from . import launch

    request = launch.JobRequest(
        image=image,
        command=(shell_cmd,),
        resources={
            "partition": partition,
            "account": account,
            "cpus_per_task": cpus_per_task,
            "gpus_per_node": gpus_per_node,
            "mem": mem,
            "time": time,
            "job_name": job_name or "slurmc-shell",
        },
        extra=tuple(sbatch_arg or ()),
        binds=tuple(bind or ()),
        env=tuple(env or ()),
        conda=None if conda is None else ("with_conda" if conda else "none"),
        cache_dirs=tuple(cache_dir or ()),
        catalogs=tuple(catalog or ()),
        interactive=True,
        pty=True,
        venv=venv,
    )
    job, environ = prepared_job(request, site)
    raise typer.Exit(launch.run_interactive(job, environ, os.getcwd()))


def register(app: typer.Typer) -> None:
    app.command("shell", no_args_is_help=True)(shell)
