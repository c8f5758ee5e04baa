"""``slurmc shell``: an interactive shell inside the container on an allocated node."""

from __future__ import annotations

import os

import typer

from slurmc.cli import completion
from slurmc.cli import options as opt
from slurmc.cli.common import handle_errors


@handle_errors
def shell(
    image: str = typer.Argument(
        None,
        autocompletion=completion.images,
        help="Image: reference, file, or catalog:PACKAGE (else the project's slurmc.toml).",
    ),
    site: str = opt.SITE,
    partition: str = opt.PARTITION,
    account: str = opt.ACCOUNT,
    cpus_per_task: str = opt.CPUS_PER_TASK,
    gpus_per_node: str = opt.GPUS_PER_NODE,
    gpus: str = opt.GPUS,
    mem: str = opt.MEM,
    time: str = opt.TIME,
    job_name: str = opt.JOB_NAME,
    sbatch_arg: list[str] = opt.SBATCH_ARG,
    bind: list[str] = opt.BIND,
    env: list[str] = opt.ENV,
    conda: bool = opt.CONDA,
    venv: str = opt.VENV,
    cache_dir: list[str] = opt.CACHE_DIR,
    catalog: list[str] = opt.CATALOG,
    refresh: bool = opt.REFRESH,
    shell_cmd: str = typer.Option("bash", "--shell", help="The shell to start in the container."),
) -> None:
    """Open a shell in IMAGE on an allocated node (salloc + srun --pty); exit releases it."""
    opt.refuse_gpus(gpus)
    from slurmc.usecases import submit as launch

    typed = opt.given(
        site=site,
        image=image,
        partition=partition,
        account=account,
        cpus_per_task=cpus_per_task,
        gpus_per_node=gpus_per_node,
        mem=mem,
        time=time,
        job_name=job_name,
        sbatch_arg=sbatch_arg,
        bind=bind,
        env=env,
        conda=conda,
        venv=venv,
        cache_dir=cache_dir,
        catalog=catalog,
    )
    o, note = opt.with_project(typed, os.getcwd())
    request = opt.request_from(
        o,
        (shell_cmd,),
        extra_resources={"job_name": o["job-name"] or "slurmc-shell"},
        interactive=True,
        pty=True,
    )
    job, environ = opt.prepared_job(request, o["site"], note=note, refresh=refresh)
    raise typer.Exit(launch.run_interactive(job, environ, os.getcwd()))


def register(app: typer.Typer) -> None:
    app.command("shell")(shell)
