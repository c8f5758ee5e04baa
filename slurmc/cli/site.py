"""``slurmc site list|show|check``: the site files slurmc knows, as it reads them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import typer

from slurmc.cli import completion
from slurmc.cli.common import SUGGEST_COMMANDS, handle_errors, print_json
from slurmc.core.sites import Site
from slurmc.errors import SlurmcError
from slurmc.values import Value, fields

site_app = typer.Typer(
    suggest_commands=SUGGEST_COMMANDS,
    help="Inspect and check site configurations.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(site_app, name="site")


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


def site_as_dict(site: Site) -> dict[str, Any]:
    """A site's settings as plain JSON values (``slurmc site show --json``)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Value):
            return {name: plain(getattr(value, name)) for name in fields(value)}
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    out: dict[str, Any] = plain(site)
    return out


def describe_site(site: Site) -> str:
    lines = [
        f"site:        {site.name}  ({site.source})",
        f"description: {site.description}",
        f"runtime:     {site.runtime} ({site.executable})",
        f"backend:     {site.backend}",
        f"cache:       {', '.join(site.cache) or '-'}",
        f"catalogs:    {', '.join(site.catalogs) or '-'}",
        f"conda:       {site.conda} (${site.conda_variable})",
        f"binds:       {', '.join(site.binds) or '-'}",
        f"env:         {', '.join(f'{k}={v}' for k, v in site.env.items()) or '-'}",
        f"account:     {'$' + site.account_env if site.account_env else '-'}"
        + (" (required)" if site.account_required else ""),
        f"defaults:    {', '.join(f'{k}={v}' for k, v in site.defaults.items()) or '-'}",
        "partitions:",
    ]
    for p in site.partitions.values():
        mark = " (default)" if p.name == site.default_partition else ""
        gpus = f"{p.gpus_per_node} x {p.gpu_vendor} GPU" if p.gpu_vendor != "none" else "no GPUs"
        cores = f", {p.cores_per_node} cores" if p.cores_per_node else ""
        lines.append(f"  {p.name}{mark}: {gpus}{cores}")
    for kind, ref in site.default_images.items():
        lines.append(f"default image {kind}: {ref}")
    return "\n".join(lines)
