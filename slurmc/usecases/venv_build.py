"""``slurmc venv create``: build a venv inside the image, pack it as SquashFS, publish it.

The venv is built in a host directory bound at :data:`~slurmc.usecases.venvs.MOUNT_POINT`
(so every absolute path pip writes is already right where jobs mount it), on this
machine or on a compute node (``srun``, Pyxis for Enroot); the runtime's command comes
from its module (:meth:`~slurmc.runtimes.base.Runtime.exec_argv`). A build publishes by
renaming finished temporary files, so a failing pip leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from slurmc import proc
from slurmc.errors import (
    ExternalCommandError,
    ToolMissingError,
    ValidationError,
)
from slurmc.usecases.venvs import (
    _INSTALLED,
    _PYTHON,
    _REQUIREMENTS,
    META_FORMAT,
    META_SUFFIX,
    MOUNT_POINT,
    SUFFIX,
    Notify,
    Venv,
    _quiet,
    _runtime,
    check_name,
    find_venv,
    store_dir,
)

# ------------------------------------------------------------------ building


#: the conda activation step, as ``slurmc run`` writes it per mode
def _conda_step(conda: str, var: str) -> str:
    fail = f'{{ echo "slurmc: \\${var} failed inside the container" >&2; exit 97; }}'
    if conda == "with_conda":
        return f"${var} || {fail}\n"
    if conda == "auto":
        return f'if [ -n "${{{var}:-}}" ]; then ${var} || {fail}; fi\n'
    return ""


def build_script(conda: str, var: str = "WITH_CONDA") -> str:
    """The bash script that makes the venv inside the container; pip's arguments are ``"$@"``.

    It activates conda like the job will, creates the venv at :data:`MOUNT_POINT`
    from the Python it then finds, installs into it, and leaves what it installed
    (``pip list --local``) and the Python version for slurmc to record.
    """
    m = MOUNT_POINT
    return (
        _conda_step(conda, var) + "py=$(command -v python3 || command -v python) || "
        '{ echo "slurmc: no python3 or python in the image" >&2; exit 96; }\n'
        f'"$py" -m venv --system-site-packages {m} || '
        '{ echo "slurmc: python -m venv failed in the image '
        '(does its Python have the venv module and ensurepip?)" >&2; exit 95; }\n'
        f". {m}/bin/activate || exit 94\n"
        'python -m pip install --disable-pip-version-check --no-input "$@" || exit\n'
        "python -m pip list --local --format=json --disable-pip-version-check "
        f"> {m}/{_INSTALLED} || exit\n"
        f"python -c 'import platform; print(platform.python_version())' > {m}/{_PYTHON}\n"
    )


def build_argv(
    runtime: str,
    executable: str,
    image: str,
    builddir: str,
    binds: Sequence[str],
    script: str,
    pip_args: Sequence[str],
    *,
    srun_options: Sequence[str] | None = None,
) -> list[str]:
    """The command that runs *script* in *image* with *builddir* at :data:`MOUNT_POINT`:
    here, or with *srun_options* on one compute node (Pyxis for Enroot)."""
    cmd = ["bash", "-c", script, "slurmc-venv", *pip_args]
    rt = _runtime(runtime, "slurmc venv create")
    mounts = [*binds, f"{builddir}:{MOUNT_POINT}"]
    if srun_options is None:
        return rt.exec_argv(executable, image, cmd, mounts, network=True)
    return rt.srun_argv(executable, image, cmd, mounts, srun_options, network=True)


def srun_argv(
    runtime: str,
    executable: str,
    image: str,
    builddir: str,
    binds: Sequence[str],
    script: str,
    pip_args: Sequence[str],
    options: Sequence[str],
) -> list[str]:
    """The same build on one compute node through ``srun`` (Pyxis for Enroot)."""
    args = (runtime, executable, image, builddir, binds, script, pip_args)
    return build_argv(*args, srun_options=options)


@dataclass(frozen=True)
class CreateRequest:
    """What ``slurmc venv create`` was asked for, as typed."""

    name: str
    image: str
    packages: tuple[str, ...] = ()
    requirements: str | None = None
    pip_args: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()
    site: str | None = None
    cache_dirs: tuple[str, ...] = ()
    conda: str | None = None  # None: the site's setting ("auto" without a site)
    force: bool = False
    on_node: bool = False
    srun_options: tuple[str, ...] = ()
    verbose: bool = False


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs, decided before anything runs."""

    name: str
    final: str
    image_given: str
    image: str
    runtime: str
    executable: str
    conda: str
    conda_variable: str
    with_conda: str | None
    binds: tuple[str, ...]
    pip_args: tuple[str, ...]  # pip install's arguments, requirements file included
    requirements_text: str | None


def plan_build(req: CreateRequest, env: Mapping[str, str], cwd: str) -> BuildPlan:
    """Validate the request, find the image and the runtime; raise before anything runs."""
    from slurmc.core.sites import expand, resolve_site
    from slurmc.errors import ConfigError
    from slurmc.usecases.inspect import locate

    check_name(req.name)
    if not req.packages and not req.requirements:
        raise ValidationError(
            "nothing to install: name packages after the options (or after `--`), or -r FILE"
        )
    for word in (*req.packages, *req.pip_args):
        if "\x00" in word:
            raise ValidationError("a package or pip argument holds a NUL byte")
    final = os.path.join(store_dir(env), req.name + SUFFIX)
    if os.path.exists(final) and not req.force:
        raise ValidationError(
            f"venv {req.name} exists ({final}); `slurmc venv rm {req.name}` first, or pass --force"
        )
    requirements_text = None
    if req.requirements:
        rpath = os.path.join(cwd, os.path.expanduser(req.requirements))
        try:
            with open(rpath, encoding="utf-8") as f:
                requirements_text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"-r {req.requirements}: cannot read it ({exc})") from None

    located = locate(req.image, req.site, req.cache_dirs, env, cwd)
    site = located.site
    if site is None:
        try:
            site = resolve_site(req.site, env)
        except ConfigError:
            if req.site:
                raise
            site = None
    if site is not None:
        runtime, executable = site.runtime, site.executable
        binds = [expand(b, env, f"{site.source}: container.binds") for b in site.binds]
        # the site's binds whose source exists here (find-links dirs, project dirs...)
        binds = [b for b in binds if os.path.exists(b.split(":", 1)[0])]
        conda, var = req.conda or site.conda, site.conda_variable
    else:
        from slurmc.usecases.inspect import detect_format, runtime_for_format

        runtime, executable = runtime_for_format(detect_format(located.path), "venv create")
        binds, conda, var = [], req.conda or "auto", "WITH_CONDA"
    for b in req.binds:
        if "," in b or not b or any(c in b for c in "\n\r\x00"):
            raise ValidationError(f"--bind: {b!r} may not be empty or hold commas")
        src, sep, rest = b.partition(":")
        binds.append(os.path.normpath(os.path.join(cwd, src)) + sep + rest)

    from slurmc.usecases.inspect import with_conda_of

    readable, with_conda = with_conda_of(located.path)
    if conda == "auto" and readable:
        conda = "with_conda" if with_conda is not None else "none"
    pip_args = list(req.pip_args)
    if requirements_text is not None:
        pip_args += ["-r", f"{MOUNT_POINT}/{_REQUIREMENTS}"]
    pip_args += req.packages
    return BuildPlan(
        name=req.name,
        final=final,
        image_given=req.image,
        image=located.path,
        runtime=runtime,
        executable=executable,
        conda=conda,
        conda_variable=var,
        with_conda=with_conda,
        binds=tuple(binds),
        pip_args=tuple(pip_args),
        requirements_text=requirements_text,
    )


def _hint(plan: BuildPlan, stderr: str) -> str:
    hint = _runtime(plan.runtime, "slurmc venv create").build_hint(stderr, MOUNT_POINT)
    return hint or f"venv {plan.name}: nothing was kept"


def _temp(final: str, what: str) -> str:
    directory, name = os.path.split(final)
    host = socket.gethostname().split(".")[0]
    return os.path.join(directory, f".{name}.{what}.{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}")


def _fsync_rename(tmp: str, final: str, *, replace: bool) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(tmp, final)
    else:
        try:
            os.link(tmp, final)  # atomic, and never over a venv made meanwhile
        except FileExistsError:
            raise ValidationError(
                f"venv {os.path.basename(final).removesuffix(SUFFIX)} was created by another "
                "command meanwhile; pass --force to replace it"
            ) from None
        finally:
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dfd = os.open(os.path.dirname(final), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _mksquashfs(src: str, dest: str) -> None:
    try:
        proc.run(["mksquashfs", src, dest, "-noappend", "-no-progress", "-no-xattrs"])
    except ToolMissingError:
        raise ToolMissingError(
            "mksquashfs not found on PATH; install squashfs-tools (it packs the venv)"
        ) from None


def _read_build_notes(venv_dir: str) -> tuple[list[dict[str, str]], str | None]:
    installed: list[dict[str, str]] = []
    with contextlib.suppress(OSError, ValueError, TypeError, RecursionError):
        with open(os.path.join(venv_dir, _INSTALLED), encoding="utf-8") as f:
            raw = json.load(f)
        installed = [
            {"name": str(d.get("name", "")), "version": str(d.get("version", ""))}
            for d in raw
            if isinstance(d, dict)
        ]
    python = None
    with contextlib.suppress(OSError), open(os.path.join(venv_dir, _PYTHON)) as f:
        python = f.read().strip() or None
    for n in (_INSTALLED, _PYTHON, _REQUIREMENTS):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(venv_dir, n))
    return installed, python


def _run_build(argv: list[str], plan: BuildPlan, env: Mapping[str, str], verbose: bool) -> None:
    run_env = dict(env)
    run_env.setdefault("USER", run_env.get("LOGNAME") or "slurmc")  # ch-run insists on $USER
    if verbose:
        code = proc.run_foreground(argv, env=run_env)
        if code != 0:
            raise ExternalCommandError(argv[0], code, "", _hint(plan, ""))
        return
    try:
        proc.run(argv, env=run_env)
    except ExternalCommandError as exc:
        raise ExternalCommandError(
            exc.tool, exc.returncode, exc.stderr, _hint(plan, exc.stderr)
        ) from None


def create(req: CreateRequest, env: Mapping[str, str], cwd: str, notify: Notify = _quiet) -> Venv:
    """Build the venv in the image, pack it, publish ``NAME.sqsh`` and ``NAME.json``."""
    plan = plan_build(req, env, cwd)
    store = os.path.dirname(plan.final)
    try:
        os.makedirs(store, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"cannot create the venv directory {store}: {exc.strerror}") from None
    # The tree is built on local disk (pip writes many small files); a build on a
    # compute node needs it where the node sees it, in the store.
    workdir = tempfile.mkdtemp(prefix=f".{plan.name}.build.", dir=store if req.on_node else None)
    sqsh_tmp = _temp(plan.final, "packing")
    meta_tmp = _temp(plan.final.removesuffix(SUFFIX) + META_SUFFIX, "writing")
    try:
        venv_dir = os.path.join(workdir, "venv")
        os.mkdir(venv_dir, 0o755)
        if plan.requirements_text is not None:
            with open(os.path.join(venv_dir, _REQUIREMENTS), "w", encoding="utf-8") as f:
                f.write(plan.requirements_text)
        script = build_script(plan.conda, plan.conda_variable)
        if req.on_node:
            argv = srun_argv(
                plan.runtime,
                plan.executable,
                plan.image,
                venv_dir,
                plan.binds,
                script,
                plan.pip_args,
                req.srun_options,
            )
        else:
            argv = build_argv(
                plan.runtime,
                plan.executable,
                plan.image,
                venv_dir,
                plan.binds,
                script,
                plan.pip_args,
            )
        where = "on a compute node" if req.on_node else "here"
        notify(f"building venv {plan.name} in {plan.image} with {plan.runtime} ({where})")
        t0 = time.monotonic()
        _run_build(argv, plan, env, req.verbose)
        build_seconds = time.monotonic() - t0
        installed, python = _read_build_notes(venv_dir)
        t1 = time.monotonic()
        _mksquashfs(venv_dir, sqsh_tmp)
        pack_seconds = time.monotonic() - t1
        os.chmod(sqsh_tmp, 0o644)
        st = os.stat(plan.image)
        meta = {
            "format": META_FORMAT,
            "name": plan.name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "base_image": {
                "given": plan.image_given,
                "path": plan.image,
                "size": st.st_size,
                "mtime": st.st_mtime,
            },
            "runtime": plan.runtime,
            "conda": plan.conda,
            "with_conda": plan.with_conda,
            "python": python,
            "packages": list(req.packages),
            "requirements": (
                os.path.join(cwd, req.requirements) if req.requirements is not None else None
            ),
            "requirements_text": plan.requirements_text,
            "pip_args": list(req.pip_args),
            "installed": installed,
            "build_seconds": round(build_seconds, 2),
            "pack_seconds": round(pack_seconds, 2),
            "mount_point": MOUNT_POINT,
        }
        with open(meta_tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        os.chmod(meta_tmp, 0o644)
        # A replaced venv's unpacked copies stay: queued jobs name them in their scripts.
        # `slurmc venv rm` removes them all.
        _fsync_rename(sqsh_tmp, plan.final, replace=req.force)
        _fsync_rename(meta_tmp, plan.final.removesuffix(SUFFIX) + META_SUFFIX, replace=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for tmp in (sqsh_tmp, meta_tmp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return find_venv(plan.name, env, cwd)
