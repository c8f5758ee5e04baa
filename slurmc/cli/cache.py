"""``slurmc cache ...`` and ``slurmc images``: thin commands over slurmc.cache."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import typer

from slurmc.cli import completion
from slurmc.cli.common import (
    SUGGEST_COMMANDS,
    handle_errors,
    human_size,
    notify,
    print_json,
    progress_ticker,
)

cache_app = typer.Typer(
    suggest_commands=SUGGEST_COMMANDS, help="Manage the shared image cache.", no_args_is_help=True
)

SITE = typer.Option(
    None,
    "--site",
    help="Site name or file (else $SLURMC_SITE).",
    autocompletion=completion.sites,
)
CACHE_DIR = typer.Option(None, "--cache-dir", help="Cache root, instead of the site's.")
CATALOG = typer.Option(None, "--catalog", help="Catalog directory, instead of the site's.")


def _context(site: str | None, cache_dir: list[str] | None, catalog: list[str] | None) -> Any:
    from slurmc.core.roots import site_roots
    from slurmc.core.sites import resolve_site
    from slurmc.runtimes import get_runtime

    env = dict(os.environ)
    s = resolve_site(site, env)
    roots = site_roots(s, env, tuple(cache_dir or ()), tuple(catalog or ()))
    return s, get_runtime(s.runtime), roots, env


def _login(registry: str, username: str | None, from_stdin: bool, save: bool) -> Any:
    """The login typed for this pull: the password from a terminal prompt or stdin."""
    from slurmc.errors import ValidationError
    from slurmc.runtimes.base import Login

    if username is None:
        if from_stdin or save:
            raise ValidationError("--password-stdin and --save go with --username USER")
        return None
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt(f"Password for {username} at {registry}", hide_input=True)
    else:
        raise ValidationError(
            "--username: no terminal to ask the password on; pipe it with --password-stdin"
        )
    if not password:
        raise ValidationError(f"--username {username}: the password is empty")
    return Login(registry, username, password)


def _writable_root(roots: Any) -> str:
    return str(roots.writable())


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


@cache_app.command("ls")
@handle_errors
def cache_ls(
    site: str = SITE,
    cache_dir: list[str] = CACHE_DIR,
    catalog: list[str] = CATALOG,
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """List cached images: reference, size, age, last use."""
    from slurmc.cache.manage import entries

    _, runtime, roots, _ = _context(site, cache_dir, catalog)
    found = entries(roots.caches, runtime)
    now = time.time()
    if as_json:
        print_json([e.as_dict(now) for e in found])
        sys.stdout.write("\n")
        return
    if not found:
        typer.echo(f"no images in {', '.join(roots.caches) or '(no cache)'}")
        return
    typer.echo(f"{'REFERENCE':<60} {'SIZE':>8} {'AGE':>5} {'USED':>5}  DIGEST")
    for e in found:
        d = e.as_dict(now)
        digest = str(d.get("digest") or "-")
        typer.echo(
            f"{d['reference']:<60} {human_size(e.size):>8} {_age(now - e.mtime):>5} "
            f"{_age(now - max(e.atime, e.mtime)):>5}  {digest[:19]}"
        )


@cache_app.command("pull")
@handle_errors
def cache_pull(
    reference: str = typer.Argument(None, help="Image reference to pull."),
    default: str = typer.Option(None, "--default", help="The site's default image: cpu|cuda|rocm."),
    site: str = SITE,
    cache_dir: list[str] = CACHE_DIR,
    catalog: list[str] = CATALOG,
    lock_timeout: float = typer.Option(1800, "--lock-timeout", help="Seconds to wait for a lock."),
    pull_timeout: float = typer.Option(3600, "--pull-timeout", help="Seconds a pull may take."),
    create: bool = typer.Option(
        True, "--create/--nocreate", help="Enroot: also `enroot create` your own container."
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Ask the registry; pull again only if the tag moved."
    ),
    username: str = typer.Option(
        None, "--username", help="Log in as USER (the password is asked for, or --password-stdin)."
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="With --username: read the password from stdin."
    ),
    save: bool = typer.Option(
        False, "--save", help="With --username: keep the login in the credentials file (0600)."
    ),
) -> None:
    """Pull an image into the cache once (concurrent callers wait for the one pull)."""
    from slurmc.cache.manage import default_refs, refresh_image
    from slurmc.cache.pull import PullOptions, pull_into
    from slurmc.errors import CacheError
    from slurmc.grammar.refs import parse_reference

    s, runtime, roots, env = _context(site, cache_dir, catalog)
    if (reference is None) == (default is None):
        raise CacheError("give either a REFERENCE or --default cpu|cuda|rocm")
    ref = default_refs(s.default_images, default) if default else parse_reference(reference)
    login = _login(ref.domain, username, password_stdin, save)
    options = PullOptions(
        executable=s.executable,
        lock_timeout=lock_timeout,
        pull_timeout=pull_timeout,
        login=login,
    )
    rel = runtime.cache_relpath(ref)
    from slurmc.cache.layout import lookup

    path = next((p for r in (*roots.catalogs, *roots.caches) if (p := lookup(r, rel))), None)
    if refresh:
        path = refresh_image(ref, runtime, roots, options, env, notify=notify)
    elif path is None:
        path = pull_into(
            ref,
            runtime,
            _writable_root(roots),
            options,
            env,
            notify=notify,
            ticker=progress_ticker(),
        )
    elif login is not None and save:
        from slurmc.cache.registry import manifest_digest

        manifest_digest(ref, login)  # cached already: check the login before keeping it
    if login is not None and save:
        from slurmc.cache.credentials import Credential
        from slurmc.cache.credentials import save as save_login

        kept = save_login(Credential(login.registry, login.username, login.password), env)
        notify(f"login for {login.registry} saved in {kept}")
    copy = runtime.user_copy(s.executable, ref, path) if create else None
    if copy is not None:
        from slurmc.cache.manage import make_user_copy

        made = make_user_copy(copy, env)
        notify(f"{runtime.name} container {copy.name} {'created' if made else 'already exists'}")
    typer.echo(path)


@cache_app.command("add")
@handle_errors
def cache_add(
    file: str = typer.Argument(..., help="A local image file (SIF, SquashFS, OCI archive)."),
    reference: str = typer.Argument(..., help="The reference it is an image of."),
    force: bool = typer.Option(False, "--force", help="Replace a cached image."),
    site: str = SITE,
    cache_dir: list[str] = CACHE_DIR,
) -> None:
    """Copy a local image into the cache under REFERENCE's name, with shared permissions."""
    from slurmc.cache.manage import add

    _, runtime, roots, env = _context(site, cache_dir, None)
    typer.echo(add(file, reference, runtime, _writable_root(roots), env, force=force))


@cache_app.command("rm")
@handle_errors
def cache_rm(
    reference: str = typer.Argument(...),
    site: str = SITE,
    cache_dir: list[str] = CACHE_DIR,
) -> None:
    """Remove an image from the cache."""
    from slurmc.cache.manage import remove

    _, runtime, roots, _ = _context(site, cache_dir, None)
    for path in remove(reference, runtime, roots.caches):
        typer.echo(f"removed {path}")


@cache_app.command("prune")
@handle_errors
def cache_prune(
    max_size: str = typer.Option(None, "--max-size", help="Keep at most this much, e.g. 500G."),
    older_than: float = typer.Option(None, "--older-than", help="Drop images unused N days."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; remove nothing."),
    site: str = SITE,
    cache_dir: list[str] = CACHE_DIR,
) -> None:
    """Remove least recently used images, and leftovers of killed pulls."""
    from slurmc.cache.manage import clean, entries, parse_size, plan_prune, stale_leftovers

    _, runtime, roots, _ = _context(site, cache_dir, None)
    budget = parse_size(max_size) if max_size else None
    plan = plan_prune(entries(roots.caches, runtime), max_size=budget, older_than_days=older_than)
    leftovers = stale_leftovers(roots.caches)
    from slurmc.cache.manage import unlink_entry

    failed = 0
    for e in plan.remove:
        typer.echo(f"{'would remove' if dry_run else 'removing'} {e.path} ({human_size(e.size)})")
        why = None if dry_run else unlink_entry(e)
        if why:
            failed += 1
            typer.echo(f"slurmc: cannot remove {e.path}: {why}", err=True)
    for path in leftovers:
        typer.echo(f"{'would clean' if dry_run else 'cleaning'} {path}")
    if not dry_run:
        clean(leftovers)
    typer.echo(f"kept {human_size(plan.keep_bytes)}")
    if failed:
        raise typer.Exit(1)


@cache_app.command("verify")
@handle_errors
def cache_verify(
    site: str = SITE,
    cache_dir: list[str] = CACHE_DIR,
    remove_bad: bool = typer.Option(False, "--remove-bad", help="Delete the broken images."),
) -> None:
    """Check that every cached image is whole; exit 1 if one is not."""
    from slurmc.cache.manage import entries, verify

    _, runtime, roots, _ = _context(site, cache_dir, None)
    found = entries(roots.caches, runtime)
    bad = verify(found, runtime)
    for e, why in bad:
        typer.echo(f"BAD {e.path}: {why}")
        if remove_bad:
            from slurmc.cache.manage import unlink_entry

            failure = unlink_entry(e)
            if failure:
                typer.echo(f"slurmc: cannot remove {e.path}: {failure}", err=True)
    typer.echo(f"{len(found) - len(bad)} of {len(found)} images ok")
    if bad:
        raise typer.Exit(1)


@handle_errors
def images(
    package: str = typer.Option(None, "--package", help="e.g. pytorch"),
    rocm: str = typer.Option(None, "--rocm", help="ROCm version (prefix), e.g. 6.2"),
    python: str = typer.Option(None, "--python", help="Python version (prefix), e.g. 3.12"),
    newest: bool = typer.Option(False, "--newest", help="Only the newest match (its path)."),
    as_json: bool = typer.Option(False, "--json"),
    site: str = SITE,
    catalog: list[str] = CATALOG,
) -> None:
    """List the site's image catalogs (LUMI's SIF directory), newest first."""
    from slurmc.cache.catalog import list_catalogs, matches, newest_first, pick

    _, _, roots, _ = _context(site, None, catalog)
    if newest:
        if not package:
            raise typer.BadParameter("--newest needs --package")
        typer.echo(pick(roots.catalogs, package, None, rocm, python).path)
        return
    found = newest_first(
        [i for i in list_catalogs(roots.catalogs) if matches(i, package, None, rocm, python)]
    )
    if as_json:
        print_json([i.as_dict() for i in found])
        sys.stdout.write("\n")
        return
    typer.echo(f"{'PACKAGE':<10} {'VERSION':<24} {'ROCM':<7} {'PYTHON':<7} PATH")
    for i in found:
        typer.echo(f"{i.package:<10} {i.version:<24} {i.rocm:<7} {i.python:<7} {i.path}")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
    app.command("images")(images)
