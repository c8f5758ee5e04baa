"""Python environments on top of an image: a venv built inside the container, packed as SquashFS.

LUMI's recipe (LUMI-AI-Guide, FIELD-NOTES §4): create the venv *inside* the
container with ``--system-site-packages`` (after ``$WITH_CONDA`` where the image
needs it), pack it with ``mksquashfs``, and mount it at ``/user-software`` in the
job: ``singularity exec -B env.sqsh:/user-software:image-src=/ IMAGE ...``.

slurmc builds the venv in a host directory bound at :data:`MOUNT_POINT` while it
is made, so every absolute path pip writes (``pyvenv.cfg``, script shebangs,
``bin/activate``) is already right where the job mounts it. Venvs live in one
per-user directory (:func:`store_dir`) as ``NAME.sqsh`` plus ``NAME.json`` (the
base image, the packages, the creation time); a build publishes by renaming a
finished temporary file, so a failing pip leaves nothing behind.

How a job mounts one, per runtime (:func:`venv_binds`):

- Apptainer/Singularity mount the SquashFS file itself (``image-src=/``).
- Charliecloud, Enroot/Pyxis and Podman cannot mount a SquashFS file as a bind:
  the file is unpacked once (``unsquashfs``) into ``.unpacked/`` beside it, keyed by
  the file's size and mtime, and that directory is bound read-only.

``slurmc build`` hands a conda environment file to cotainr, the tool LUMI offers
for extending an image (:func:`cotainr_argv`, :func:`build_with_cotainr`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from slurmc import proc
from slurmc.errors import (
    ExternalCommandError,
    ImageNotFoundError,
    SlurmcError,
    ToolMissingError,
    ValidationError,
)
from slurmc.paths import data_home
from slurmc.runtimes import Runtime, get_runtime

#: where a venv is mounted in the container, while it is built and in every job
MOUNT_POINT = "/user-software"
SUFFIX = ".sqsh"
META_SUFFIX = ".json"
META_FORMAT = 1
UNPACKED = ".unpacked"
_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
#: files the build script leaves in the venv for slurmc; removed before packing
_INSTALLED = ".slurmc-installed.json"
_PYTHON = ".slurmc-python"
_REQUIREMENTS = ".slurmc-requirements.txt"

Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------ names and the store


def check_name(name: str) -> str:
    """A venv name is a file name: letters, digits, ``_ . -``; not hidden, not an option."""
    if not _NAME.match(name) or name.startswith((".", "-")):
        raise ValidationError(
            f"venv name {name!r}: use letters, digits, '_', '.' and '-' "
            "(not starting with '.' or '-'), e.g. h5-env"
        )
    return name


def store_dir(env: Mapping[str, str]) -> str:
    """The per-user venv directory: ``$SLURMC_VENV_DIR``, else ``$XDG_DATA_HOME/slurmc/venvs``
    (``~/.local/share/slurmc/venvs``)."""
    if env.get("SLURMC_VENV_DIR"):
        return os.path.abspath(os.path.expanduser(env["SLURMC_VENV_DIR"]))
    return os.path.abspath(data_home(env) / "venvs")


@dataclass(frozen=True)
class Venv:
    name: str
    path: str  # the SquashFS file
    size: int
    mtime_ns: int
    store: str  # where its unpacked copies go (``STORE/.unpacked``)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def base_image(self) -> str | None:
        base = self.meta.get("base_image")
        return base.get("path") if isinstance(base, dict) else None

    @property
    def unpacked_path(self) -> str:
        """Where runtimes that cannot mount the file see it unpacked (one copy per version)."""
        digest = hashlib.sha256(os.path.realpath(self.path).encode()).hexdigest()[:10]
        stem = os.path.basename(self.path).removesuffix(SUFFIX)
        return os.path.join(self.store, UNPACKED, f"{stem}-{digest}-{self.size}-{self.mtime_ns}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "base_image": self.base_image,
            "created": self.meta.get("created"),
            "python": self.meta.get("python"),
            "packages": self.meta.get("packages", []),
            "requirements": self.meta.get("requirements"),
            "pip_args": self.meta.get("pip_args", []),
            "installed": self.meta.get("installed", []),
            "runtime": self.meta.get("runtime"),
            "build_seconds": self.meta.get("build_seconds"),
        }


def _read_meta(sqsh: str) -> dict[str, Any]:
    try:
        with open(sqsh.removesuffix(SUFFIX) + META_SUFFIX, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _venv_at(path: str, name: str, store: str) -> Venv:
    st = os.stat(path)
    return Venv(name, path, st.st_size, st.st_mtime_ns, store, _read_meta(path))


def list_venvs(env: Mapping[str, str]) -> list[Venv]:
    """The venvs in the store, by name; files being built (hidden names) are not venvs."""
    store = store_dir(env)
    try:
        names = sorted(os.listdir(store))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ValidationError(f"cannot read the venv directory {store}: {exc.strerror}") from None
    out = []
    for n in names:
        if n.startswith(".") or not n.endswith(SUFFIX):
            continue
        with contextlib.suppress(FileNotFoundError):  # removed while listing
            out.append(_venv_at(os.path.join(store, n), n.removesuffix(SUFFIX), store))
    return out


def _is_squashfs(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"hsqs"
    except OSError:
        return False


def find_venv(spec: str, env: Mapping[str, str], cwd: str) -> Venv:
    """A venv by name (in the store) or by path to a SquashFS file (e.g. one packed by hand)."""
    store = store_dir(env)
    if "/" in spec or spec.endswith(SUFFIX):
        path = os.path.normpath(os.path.join(cwd, os.path.expanduser(spec)))
        if not os.path.isfile(path):
            raise ImageNotFoundError(f"--venv: {path} does not exist; check the path")
        if not _is_squashfs(path):
            raise ValidationError(
                f"--venv: {path} is not a SquashFS file; pack a venv with `mksquashfs DIR FILE`"
            )
        return _venv_at(path, os.path.basename(path).removesuffix(SUFFIX), store)
    check_name(spec)
    path = os.path.join(store, spec + SUFFIX)
    try:
        return _venv_at(path, spec, store)
    except FileNotFoundError:
        raise ImageNotFoundError(
            f"no venv named {spec} in {store}; `slurmc venv ls` lists them, "
            f"`slurmc venv create {spec} --image IMAGE PACKAGE...` makes one"
        ) from None


def _unpacked_copies(venv: Venv) -> list[str]:
    root = os.path.join(venv.store, UNPACKED)
    prefix = os.path.basename(venv.unpacked_path).rsplit("-", 2)[0] + "-"
    try:
        return sorted(os.path.join(root, n) for n in os.listdir(root) if n.startswith(prefix))
    except OSError:
        return []


def remove(name: str, env: Mapping[str, str]) -> list[str]:
    """Remove a venv: its SquashFS file, its sidecar and its unpacked copies."""
    venv = find_venv(check_name(name), env, os.getcwd())
    removed = []
    for path in (venv.path, venv.path.removesuffix(SUFFIX) + META_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    for d in _unpacked_copies(venv):
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


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


def _runtime(name: str, what: str) -> Runtime:
    try:
        return get_runtime(name)
    except KeyError:
        raise ValidationError(f"{what}: no runtime {name}") from None


def build_argv(
    runtime: str,
    executable: str,
    image: str,
    builddir: str,
    binds: Sequence[str],
    script: str,
    pip_args: Sequence[str],
) -> list[str]:
    """The local command that runs *script* in *image* with *builddir* at :data:`MOUNT_POINT`."""
    cmd = ["bash", "-c", script, "slurmc-venv", *pip_args]
    rt = _runtime(runtime, "slurmc venv create")
    mounts = [*binds, f"{builddir}:{MOUNT_POINT}"]
    return rt.exec_argv(executable, image, cmd, mounts, network=True)


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
    cmd = ["bash", "-c", script, "slurmc-venv", *pip_args]
    rt = _runtime(runtime, "slurmc venv create")
    mounts = [*binds, f"{builddir}:{MOUNT_POINT}"]
    return rt.srun_argv(executable, image, cmd, mounts, options, network=True)


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


# ------------------------------------------------------------------ using a venv in a job


def mount_source(venv: Venv, runtime: str) -> str:
    """What the job binds: the SquashFS file (Apptainer/Singularity) or its unpacked copy."""
    return venv.path if _runtime(runtime, "--venv").mounts_squashfs else venv.unpacked_path


def venv_binds(runtime: str, venv: Venv) -> list[str]:
    """The bind that puts *venv* at :data:`MOUNT_POINT`, in the runtime's own bind syntax."""
    src = mount_source(venv, runtime)
    if any(c in src for c in ",:") or any(ord(c) < 32 for c in src):
        raise ValidationError(
            f"--venv: {src} holds ',' or ':' or a control character, which no bind list can "
            "carry; move the venv directory (SLURMC_VENV_DIR)"
        )
    return [_runtime(runtime, "--venv").venv_bind(src, MOUNT_POINT)]


def prepare(venv: Venv, runtime: str) -> str:
    """Make :func:`mount_source` exist: unpack the file once for runtimes that need a directory.

    Concurrent callers each unpack into a temporary directory; the first rename wins and
    the others discard theirs, so no lock is needed.
    """
    target = mount_source(venv, runtime)
    if _runtime(runtime, "--venv").mounts_squashfs or os.path.isdir(target):
        return target
    root = os.path.dirname(target)
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".{os.path.basename(target)}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        proc.run(["unsquashfs", "-no-progress", "-no-xattrs", "-d", tmp, venv.path])
    except ToolMissingError:
        raise ToolMissingError(
            f"unsquashfs not found on PATH; install squashfs-tools ({runtime} mounts a venv "
            "as a directory, unpacked once from its SquashFS file)"
        ) from None
    except SlurmcError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(target):
            raise
    return target


def activation() -> str:
    """The shell step that activates the venv in the job, after conda's activation."""
    return f"source {MOUNT_POINT}/bin/activate"


def base_mismatch(venv: Venv, image_path: str) -> str | None:
    """A warning when the job's image is not the image the venv was built on."""
    base = venv.meta.get("base_image")
    if not isinstance(base, dict) or not base.get("path"):
        return None
    built_on = str(base["path"])
    if os.path.realpath(built_on) != os.path.realpath(image_path):
        return (
            f"venv {venv.name} was built on {built_on}, this job uses {image_path}: "
            "its packages may not work with that image's Python"
        )
    try:
        st = os.stat(image_path)
    except OSError:
        return None
    if st.st_size != base.get("size") or abs(st.st_mtime - float(base.get("mtime", 0))) > 1e-3:
        return (
            f"{image_path} changed since venv {venv.name} was built on it; "
            f"rebuild it if imports fail (slurmc venv create {venv.name} --force ...)"
        )
    return None


# ------------------------------------------------------------------ slurmc build (cotainr)

COTAINR_HINT = (
    "cotainr not found on PATH; on LUMI: `module load CrayEnv cotainr`; elsewhere "
    "`pip install cotainr` (it builds with Apptainer/Singularity, which must be installed)"
)


def cotainr_argv(
    out: str,
    *,
    base_image: str | None,
    system: str | None,
    conda_env: str | None,
    accept_licenses: bool = False,
    executable: str = "cotainr",
) -> list[str]:
    """``cotainr build OUT --base-image=IMAGE --conda-env=ENV.yml`` (LUMI's recipe)."""
    argv = [executable, "build", out]
    if base_image:
        argv.append(f"--base-image={base_image}")
    if system:
        argv.append(f"--system={system}")
    if conda_env:
        argv.append(f"--conda-env={conda_env}")
    if accept_licenses:
        argv.append("--accept-licenses")
    return argv


def build_with_cotainr(
    out: str,
    *,
    base_image: str | None,
    system: str | None,
    conda_env: str | None,
    accept_licenses: bool,
    force: bool,
    env: Mapping[str, str],
    cwd: str,
    notify: Notify = _quiet,
) -> str:
    """Run cotainr into a temporary file beside *out* and rename it into place."""
    if bool(base_image) == bool(system):
        raise ValidationError("give exactly one of --base-image IMAGE and --system NAME")
    out = os.path.normpath(os.path.join(cwd, os.path.expanduser(out)))
    if os.path.exists(out) and not force:
        raise ValidationError(f"{out} exists; pass --force to replace it")
    if not os.path.isdir(os.path.dirname(out)):
        raise ValidationError(f"{os.path.dirname(out)}: no such directory for {out}")
    if conda_env is not None:
        conda_env = os.path.normpath(os.path.join(cwd, os.path.expanduser(conda_env)))
        if not os.path.isfile(conda_env):
            raise ValidationError(f"--conda-env {conda_env}: no such file")
    if base_image and "://" not in base_image:  # a local image file: cotainr wants it absolute
        local = os.path.normpath(os.path.join(cwd, os.path.expanduser(base_image)))
        if not os.path.exists(local):
            raise ImageNotFoundError(f"--base-image {local} does not exist; check the path")
        base_image = local
    exe = shutil.which("cotainr", path=env.get("PATH"))
    if exe is None:
        raise ToolMissingError(COTAINR_HINT)
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.building.{os.getpid()}.sif")
    argv = cotainr_argv(
        tmp,
        base_image=base_image,
        system=system,
        conda_env=conda_env,
        accept_licenses=accept_licenses,
        executable="cotainr",
    )
    notify(f"running: {' '.join(argv)}")
    try:
        code = proc.run_foreground(argv, cwd=cwd, env=env)
        if code != 0:
            raise ExternalCommandError(
                "cotainr", code, "", f"see its output above; {out} was not written"
            )
        if not os.path.isfile(tmp):
            raise ExternalCommandError("cotainr", 0, "it wrote no image", f"{out} was not written")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out
