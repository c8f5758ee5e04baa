"""``slurmc run``: plan, pull, render and submit (or run under salloc, or print).

No ``from __future__ import annotations`` here: Typer reads the parameters' types at
every run, and string annotations would be compiled and evaluated each time (80 of
them).
"""

import os
import sys

import typer

from slurmc.cli import completion
from slurmc.cli import options as opt
from slurmc.cli.common import handle_errors, notify


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
    site: str = opt.SITE,
    partition: str = opt.PARTITION,
    account: str = opt.ACCOUNT,
    nodes: str = typer.Option(None, "--nodes", "-N"),
    ntasks_per_node: str = typer.Option(None, "--ntasks-per-node"),
    cpus_per_task: str = opt.CPUS_PER_TASK,
    gpus_per_node: str = opt.GPUS_PER_NODE,
    gpus: str = opt.GPUS,
    mem: str = opt.MEM,
    time: str = opt.TIME,
    job_name: str = opt.JOB_NAME,
    output: str = typer.Option(None, "--output", "-o"),
    error: str = typer.Option(None, "--error", "-e"),
    array: str = typer.Option(None, "--array", "-a"),
    dependency: str = typer.Option(None, "--dependency", "-d"),
    comment: str = typer.Option(None, "--comment"),
    sbatch_arg: list[str] = opt.SBATCH_ARG,
    bind: list[str] = opt.BIND,
    env: list[str] = opt.ENV,
    conda: bool = opt.CONDA,
    venv: str = opt.VENV,
    cache_dir: list[str] = opt.CACHE_DIR,
    catalog: list[str] = opt.CATALOG,
    refresh: bool = opt.REFRESH,
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

    opt.refuse_gpus(gpus)
    image_given, command = opt.image_and_command(image, command)
    typed = opt.given(
        site=site,
        image=image_given,
        partition=partition,
        account=account,
        nodes=nodes,
        ntasks_per_node=ntasks_per_node,
        cpus_per_task=cpus_per_task,
        gpus_per_node=gpus_per_node,
        mem=mem,
        time=time,
        job_name=job_name,
        output=output,
        error=error,
        comment=comment,
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
        command,
        extra_resources={"array": array, "dependency": dependency},
        interactive=interactive,
    )
    if wait and (dry_run or interactive or array):
        from slurmc.errors import ValidationError

        raise ValidationError(
            "--wait follows one batch job: not with --dry-run, --interactive or --array"
        )
    job, environ = opt.prepared_job(request, o["site"], dry_run=dry_run, note=note, refresh=refresh)
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


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        # Everything after IMAGE is the command, options included (as with srun,
        # `apptainer exec` and `docker run`): slurmc's own options come before IMAGE.
        context_settings={"allow_interspersed_args": False},
        no_args_is_help=True,
        cls=opt.ImageFirstCommand,
    )(run)
