"""``slurmc info``: parse, call :mod:`slurmc.usecases.info`, print. Nothing else."""

from __future__ import annotations

import os

import typer


def register(app: typer.Typer) -> None:
    from slurmc.cli.common import handle_errors, print_json

    @app.command("info")
    @handle_errors
    def info_command(
        site: str = typer.Option(
            None, "--site", help="Site name or site file (else $SLURMC_SITE)."
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    ) -> None:
        """What this machine has for a site: Slurm, the controller, the runtime, caches,
        catalogs, credentials, venvs. Exits non-zero when something required is missing."""
        from slurmc.core.sites import resolve_site
        from slurmc.usecases.info import gather

        env = dict(os.environ)
        chosen = resolve_site(site, env)
        checks = gather(chosen, env)
        failed = [c for c in checks if c.required and not c.ok]
        if as_json:
            doc = {
                "site": chosen.name,
                "site_file": chosen.source,
                "ok": not failed,
                "checks": [c.as_dict() for c in checks],
            }
            print_json(doc)
        else:
            typer.echo(f"site      {chosen.name}  [{chosen.source}]")
            for c in checks:
                mark = "ok" if c.ok else ("MISSING" if c.required else "warning")
                typer.echo(f"{mark:<8}  {c.name}: {c.detail}")
                if c.fix and not c.ok:
                    typer.echo(f"{'':<10}-> {c.fix}")
        if failed:
            names = ", ".join(c.name for c in failed)
            typer.echo(f"slurmc: missing for site {chosen.name}: {names} (see above)", err=True)
            raise typer.Exit(1)
