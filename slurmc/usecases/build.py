"""``slurmc build``: a conda environment file and a base image to a new SIF, through
cotainr, the tool LUMI offers for extending an image (LUMI's recipe)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping

from slurmc import proc
from slurmc.errors import (
    ExternalCommandError,
    ImageNotFoundError,
    ToolMissingError,
    ValidationError,
)
from slurmc.usecases.venvs import Notify, _quiet

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
