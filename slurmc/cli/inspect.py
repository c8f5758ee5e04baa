"""``slurmc inspect IMAGE``: parse, call :mod:`slurmc.usecases.inspect`, print. Nothing else.

:func:`register` adds the command to the Typer app; the work is imported inside
the command, so other commands do not pay for it at start-up.
"""

from __future__ import annotations

import os
import sys

import typer


def register(app: typer.Typer) -> None:
    from slurmc.cli.common import handle_errors, print_json

    @app.command("inspect", no_args_is_help=True)
    @handle_errors
    def inspect_command(
        image: str = typer.Argument(
            ..., help="A .sif/.sqfs/.sqsh file, an OCI/docker archive, a directory, or a reference."
        ),
        diff: str = typer.Option(None, "--diff", help="Another image: show packages changed."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        exec_: bool = typer.Option(
            False, "--exec", help="List packages by running pip/conda inside the container."
        ),
        on_node: bool = typer.Option(
            False, "--on-node", help="With --exec: run on a compute node through srun."
        ),
        partition: str = typer.Option(
            None, "--partition", "-p", help="srun partition (--on-node)."
        ),
        account: str = typer.Option(None, "--account", "-A", help="srun account (--on-node)."),
        time: str = typer.Option(None, "--time", "-t", help="srun time limit (--on-node)."),
        site: str = typer.Option(None, "--site", help="Site name or file (else $SLURMC_SITE)."),
        cache_dir: list[str] = typer.Option(
            None, "--cache-dir", help="Image cache root, instead of the site's ($SLURMC_CACHE_DIR)."
        ),
    ) -> None:
        """Show what IMAGE holds (OS, Python, conda envs, pip packages) without a job."""
        from slurmc.cli import inspect_view
        from slurmc.errors import ValidationError
        from slurmc.usecases import inspect as core
        from slurmc.usecases import inspect_exec

        env, cwd = dict(os.environ), os.getcwd()
        if on_node and not exec_:
            raise ValidationError("--on-node goes with --exec")
        if (partition or account or time) and not on_node:
            raise ValidationError("--partition/--account/--time go with --exec --on-node")
        if diff and exec_:
            raise ValidationError("--diff compares static readings; drop --exec")
        dirs = tuple(cache_dir or ())
        located = core.locate(image, site, dirs, env, cwd)
        if diff:
            other = core.locate(diff, site, dirs, env, cwd)
            d = core.diff(
                core.inspect_image(located.path, image), core.inspect_image(other.path, diff)
            )
            print_json(d.to_dict()) if as_json else sys.stdout.write(inspect_view.render_diff(d))
            return
        if exec_:
            options = [
                f"--{k}={v}"
                for k, v in (("partition", partition), ("account", account), ("time", time))
                if v
            ]
            listing = inspect_exec.run_exec(
                located, site, env, on_node=on_node, srun_options=options
            )
            static = core.inspect_image(located.path, image)
            comparison = inspect_exec.compare_exec(static, listing)
            if as_json:
                print_json({**listing.to_dict(), "static_comparison": comparison})
            else:
                sys.stdout.write(inspect_view.render_exec(listing, comparison))
            return
        result = core.inspect_image(located.path, image)
        print_json(result.to_dict()) if as_json else sys.stdout.write(inspect_view.render(result))
