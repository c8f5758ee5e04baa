"""``slurmc info``: what this machine has for a site, and what is missing.

Each check says what it looked at, what it found, and, when something is wrong,
how to mend it. Checks marked *required* make ``slurmc info`` exit non-zero; the
others are advice (a cache directory without the setgid bit works, but files in it
get the creator's group). Every external command is one cheap call through the one
door (:mod:`slurmc.proc`), with a short time-out: a login node whose controller hangs
gets an answer, not a hang.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from slurmc import proc
from slurmc.core.sites import Site
from slurmc.errors import SLURM_CONFIG_FIX as CONFIG_FIX
from slurmc.errors import SlurmcError, ToolMissingError, slurm_config_missing

TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _version(
    name: str,
    argv: list[str],
    env: Mapping[str, str],
    fix: str,
    required: bool = True,
    exit_ok: tuple[int, ...] = (0,),
) -> Check:
    """Run a tool's version command: missing is *fix*; present but failing says so."""
    run_env = dict(env)
    run_env.setdefault("USER", run_env.get("LOGNAME") or "slurmc")  # ch-run insists on $USER
    try:
        r = proc.run(argv, env=run_env, timeout=TIMEOUT, check=False)
    except ToolMissingError:
        return Check(name, False, f"{argv[0]} not found on PATH", fix, required)
    except SlurmcError as exc:
        return Check(
            name, False, str(exc).splitlines()[0], f"run {' '.join(argv)} and see why", required
        )
    line = _first_line(r.stdout) or _first_line(r.stderr)
    if r.returncode not in exit_ok and slurm_config_missing(r.stderr):
        return Check(
            name, False, f"{argv[0]} cannot find the cluster's configuration", CONFIG_FIX, required
        )
    if r.returncode not in exit_ok:
        why = f"{' '.join(argv)} exited {r.returncode}" + (f": {line}" if line else "")
        return Check(
            name,
            False,
            why,
            f"{argv[0]} is installed but does not work: run {' '.join(argv)}",
            required,
        )
    return Check(name, True, line or "present", "", required)


def slurm_checks(env: Mapping[str, str]) -> list[Check]:
    fix = "install Slurm's client commands (Debian: slurm-client) or load the site's slurm module"
    checks = [
        _version(tool, [tool, "--version"], env, fix) for tool in ("sbatch", "srun", "salloc")
    ]
    if all(c.ok for c in checks):
        checks.append(_controller(env))
    return checks


def _controller(env: Mapping[str, str]) -> Check:
    """One cheap call: ``scontrol ping`` asks the controller(s) whether they are up."""
    fix = "check SLURM_CONF and that munge runs; ask the admins if the controller is down"
    try:
        r = proc.run(["scontrol", "ping"], env=env, timeout=TIMEOUT, check=False)
    except SlurmcError as exc:
        return Check("controller", False, str(exc).splitlines()[0], fix)
    text = " ".join((r.stdout + " " + r.stderr).split())
    up = r.returncode == 0 and " is UP" in text
    return Check(
        "controller", up, text[:200] or f"scontrol ping exited {r.returncode}", "" if up else fix
    )


def runtime_checks(site: Site, env: Mapping[str, str]) -> list[Check]:
    from slurmc.runtimes import get_runtime

    runtime = get_runtime(site.runtime)
    fix = f"install {site.executable} (site {site.name} runs {site.runtime}) or load its module"
    checks = [_version(f"runtime {site.runtime}", runtime.version_argv(site.executable), env, fix)]
    checks.append(
        _version(
            "squashfs-tools",
            ["unsquashfs", "-version"],
            env,
            "install squashfs-tools: slurmc inspect and venvs read SquashFS with it",
            required=False,
            exit_ok=(0, 1),  # unsquashfs 4.5 prints its version, then exits 1
        )
    )
    return checks


def _mode_text(st: os.stat_result) -> str:
    return stat.filemode(st.st_mode)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def cache_checks(caches: tuple[str, ...], problems: tuple[str, ...]) -> list[Check]:
    checks = [
        Check("cache", False, p, "set the variable the site's cache path needs") for p in problems
    ]
    if not caches and not problems:
        checks.append(Check("cache", True, "the site has no shared image cache", required=False))
    writable_roots = 0
    for root in caches:
        name = f"cache {root}"
        try:
            st = os.stat(root)
        except OSError as exc:
            parent = _existing_parent(root)
            creatable = parent is not None and os.access(parent, os.W_OK | os.X_OK)
            checks.append(
                Check(
                    name,
                    False,
                    f"does not exist ({exc.strerror}); "
                    + (
                        "the first pull creates it" if creatable else "and cannot be created by you"
                    ),
                    f"create it for the group: mkdir -p {root} && chmod 2775 {root}",
                    required=False,
                )
            )
            writable_roots += creatable
            continue
        if not stat.S_ISDIR(st.st_mode):
            checks.append(
                Check(
                    name,
                    False,
                    "is not a directory",
                    "point the site's images.cache at a directory",
                )
            )
            continue
        writable = os.access(root, os.W_OK | os.X_OK)
        writable_roots += writable
        detail = f"{_mode_text(st)} group {_group(st.st_gid)}, " + (
            "writable" if writable else "read-only for you"
        )
        checks.append(
            Check(
                name,
                True,
                detail,
                ""
                if writable
                else "pulls need a writable cache: use --cache-dir DIR, or ask its owner",
                required=False,
            )
        )
        if not st.st_mode & stat.S_ISGID:
            checks.append(
                Check(
                    f"{name} setgid",
                    False,
                    "no setgid bit: new images get each creator's group, not the cache's",
                    f"chmod g+s {root} (as its owner)",
                    required=False,
                )
            )
        if not st.st_mode & stat.S_ISVTX and st.st_mode & stat.S_IWGRP:
            checks.append(
                Check(
                    f"{name} sticky",
                    False,
                    "group-writable without the sticky bit: any member can rename or delete "
                    "another member's images",
                    f"chmod +t {root} (as its owner)",
                    required=False,
                )
            )
    if caches and not writable_roots:
        checks.append(
            Check(
                "writable cache",
                False,
                "no cache root is writable by you: a missing image cannot be pulled",
                "pull with --cache-dir DIR (or SLURMC_CACHE_DIR) to a directory of yours, "
                "or ask the cache's owner to add the image",
            )
        )
    return checks


def _existing_parent(path: str) -> str | None:
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.isdir(parent):
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)
    return parent or None


def catalog_checks(catalogs: tuple[str, ...]) -> list[Check]:
    out = []
    for d in catalogs:
        ok = os.path.isdir(d) and os.access(d, os.R_OK | os.X_OK)
        out.append(
            Check(
                f"catalog {d}",
                ok,
                "readable" if ok else "missing or not readable",
                "" if ok else "check the site's images.catalogs, or pass --catalog DIR",
                required=False,
            )
        )
    return out


def credentials_check(env: Mapping[str, str]) -> Check:
    from slurmc.cache.credentials import credentials_file

    path = credentials_file(env)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(
            "credentials",
            True,
            f"{path}: none (needed only for private registries)",
            required=False,
        )
    except OSError as exc:
        return Check("credentials", False, f"{path}: {exc.strerror}", "", required=False)
    if st.st_mode & 0o077:
        return Check(
            "credentials",
            False,
            f"{path}: {_mode_text(st)}, readable by others",
            f"chmod 600 {path}",
        )
    return Check("credentials", True, f"{path}: {_mode_text(st)}", required=False)


def venv_check(env: Mapping[str, str]) -> Check:
    from slurmc.usecases.venvs import store_dir

    d = store_dir(env)
    if not os.path.exists(d):
        return Check("venvs", True, f"{d}: none yet (slurmc venv create makes it)", required=False)
    ok = os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK)
    return Check(
        "venvs",
        ok,
        f"{d}: " + ("writable" if ok else "not a writable directory"),
        "" if ok else "set SLURMC_VENV_DIR to a writable directory",
        required=False,
    )


def gather(site: Site, env: Mapping[str, str]) -> list[Check]:
    from slurmc.core.roots import site_roots

    roots = site_roots(site, env)
    return [
        *slurm_checks(env),
        *runtime_checks(site, env),
        *cache_checks(roots.caches, roots.problems),
        *catalog_checks(roots.catalogs),
        credentials_check(env),
        venv_check(env),
    ]
