"""``slurmc venv create|ls|rm`` and ``slurmc build``: parse, call a use case, print.

:func:`register` adds the commands to the Typer app; the work is imported inside
each command, so other commands do not pay for it at start-up.
"""

from __future__ import annotations

import json
import os
import sys
import time

import typer

from slurmc.cli.common import SUGGEST_COMMANDS, handle_errors, human_size, notify

venv_app = typer.Typer(
    suggest_commands=SUGGEST_COMMANDS,
    help="Python venvs on top of an image, mounted at /user-software in jobs.",
    no_args_is_help=True,
)


@venv_app.command(
    "create",
    no_args_is_help=True,
    context_settings={"allow_interspersed_args": True},
)
@handle_errors
def venv_create(
    name: str = typer.Argument(..., help="The venv's name: letters, digits, '_', '.', '-'."),
    packages: list[str] = typer.Argument(
        None, help="What pip installs (after `--` when one starts with '-')."
    ),
    image: str = typer.Option(
        ..., "--image", "-i", help="The image: a .sif/.sqsh/.sqfs file or a cached reference."
    ),
    requirements: str = typer.Option(
        None, "--requirements", "-r", help="A requirements file for pip."
    ),
    pip_arg: list[str] = typer.Option(
        None,
        "--pip-arg",
        help="An option for pip install, written --pip-arg=--no-index (repeatable).",
    ),
    bind: list[str] = typer.Option(
        None, "--bind", "-B", help="SRC[:DST] visible while building, e.g. a wheel dir."
    ),
    site: str = typer.Option(None, "--site", help="Site name or file (else $SLURMC_SITE)."),
    cache_dir: list[str] = typer.Option(
        None, "--cache-dir", help="Image cache root, instead of the site's ($SLURMC_CACHE_DIR)."
    ),
    conda: bool = typer.Option(
        None, "--conda/--no-conda", help="Force $WITH_CONDA activation on or off."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a venv of that name."),
    on_node: bool = typer.Option(False, "--on-node", help="Build on a compute node through srun."),
    partition: str = typer.Option(None, "--partition", "-p", help="srun partition (--on-node)."),
    account: str = typer.Option(None, "--account", "-A", help="srun account (--on-node)."),
    time_limit: str = typer.Option(None, "--time", "-t", help="srun time limit (--on-node)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show pip's output as it runs."),
) -> None:
    """Build a venv inside IMAGE (with --system-site-packages) and pack it as SquashFS."""
    from slurmc.errors import ValidationError
    from slurmc.usecases import venv_build

    if (partition or account or time_limit) and not on_node:
        raise ValidationError("--partition/--account/--time go with --on-node")
    options = tuple(
        f"--{k}={v}"
        for k, v in (("partition", partition), ("account", account), ("time", time_limit))
        if v
    )
    req = venv_build.CreateRequest(
        name=name,
        image=image,
        packages=tuple(packages or ()),
        requirements=requirements,
        pip_args=tuple(pip_arg or ()),
        binds=tuple(bind or ()),
        site=site,
        cache_dirs=tuple(cache_dir or ()),
        conda=None if conda is None else ("with_conda" if conda else "none"),
        force=force,
        on_node=on_node,
        srun_options=options,
        verbose=verbose,
    )
    t0 = time.monotonic()
    venv = venv_build.create(req, dict(os.environ), os.getcwd(), notify=notify)
    count = len(venv.meta.get("installed", []))
    typer.echo(
        f"Created venv {venv.name}: {venv.path} ({human_size(venv.size)}, "
        f"{count} packages, {time.monotonic() - t0:.1f} s)"
    )
    typer.echo(f"Use it: slurmc run --venv {venv.name} {image} -- python ...")


@venv_app.command("ls")
@handle_errors
def venv_ls(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List your venvs: name, base image, size, creation time."""
    from slurmc.usecases import venvs

    found = venvs.list_venvs(dict(os.environ))
    if as_json:
        sys.stdout.write(json.dumps([v.to_dict() for v in found], indent=2) + "\n")
        return
    if not found:
        typer.echo(f"no venvs in {venvs.store_dir(dict(os.environ))}")
        return
    rows = [
        [v.name, v.base_image or "-", human_size(v.size), str(v.meta.get("created") or "-")]
        for v in found
    ]
    header = ["NAME", "BASE IMAGE", "SIZE", "CREATED"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@venv_app.command("rm", no_args_is_help=True)
@handle_errors
def venv_rm(names: list[str] = typer.Argument(..., help="Venv names.")) -> None:
    """Remove venvs (their SquashFS file, record and unpacked copies)."""
    from slurmc.usecases import venvs

    for name in names:
        venvs.remove(name, dict(os.environ))
        typer.echo(f"Removed venv {name}")


def build_command(
    out: str = typer.Argument(..., help="The image to write, e.g. h5-lumi-container.sif."),
    base_image: str = typer.Option(
        None, "--base-image", help="The image to extend: a .sif file or a docker:// URI."
    ),
    system: str = typer.Option(None, "--system", help="cotainr's system (e.g. lumi-g)."),
    conda_env: str = typer.Option(
        ..., "--conda-env", help="A conda environment file (name, dependencies, pip: ...)."
    ),
    accept_licenses: bool = typer.Option(
        False, "--accept-licenses", help="Accept Miniforge's license terms (cotainr asks)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Build a new SIF image: BASE plus a conda environment, with cotainr."""
    from slurmc.usecases import build

    path = build.build_with_cotainr(
        out,
        base_image=base_image,
        system=system,
        conda_env=conda_env,
        accept_licenses=accept_licenses,
        force=force,
        env=dict(os.environ),
        cwd=os.getcwd(),
        notify=notify,
    )
    typer.echo(f"Built {path}")


def register(app: typer.Typer) -> None:
    """Add ``venv`` and ``build`` to *app*."""
    app.add_typer(venv_app, name="venv")
    app.command("build", no_args_is_help=True)(handle_errors(build_command))
