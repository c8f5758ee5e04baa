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

Building one is :mod:`slurmc.usecases.venv_build`; ``slurmc build`` (cotainr) is
:mod:`slurmc.usecases.build`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slurmc import proc
from slurmc.errors import (
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


# ------------------------------------------------------------------ using a venv in a job


def _runtime(name: str, what: str) -> Runtime:
    try:
        return get_runtime(name)
    except KeyError:
        raise ValidationError(f"{what}: no runtime {name}") from None


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
