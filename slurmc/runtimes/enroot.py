"""Enroot through Pyxis: ``srun --container-image=IMAGE.sqsh --container-mounts=...``.

Enroot finds NVIDIA GPUs through its hook (``NVIDIA_VISIBLE_DEVICES``, set by
Slurm's gres); it has no AMD hook, so no flag is rendered for either vendor.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..refs import DEFAULT_DOMAIN, ImageRef
from .base import Runtime, Step


def enroot_uri(ref: ImageRef) -> str:
    """Enroot's ``docker://[REGISTRY#]IMAGE[:TAG]`` (``#`` separates the registry)."""
    tag = f":{ref.effective_tag}" if ref.effective_tag else ""
    digest = f"@{ref.digest}" if ref.digest else ""
    if ref.domain == DEFAULT_DOMAIN:
        return f"docker://{ref.familiar_path}{tag}{digest}"
    return f"docker://{ref.domain}#{ref.path}{tag}{digest}"


@dataclass(frozen=True)
class Enroot(Runtime):
    name: str = "enroot"
    template: str = "launch/enroot.sh.j2"
    suffix: str = ".sqsh"
    mounts_workdir: bool = True
    format: str = "squashfs"
    #: the job's variables go to the inner wrapper as arguments: exported inside the
    #: container only, never into the batch script's own environment (a PATH meant for
    #: the container must not change which srun the script runs)
    env_as_arguments: bool = True
    #: Pyxis writes each --container-mounts entry into a file that enroot sources with
    #: bash, escaping only space, tab, newline and backslash (Pyxis 0.24, FIELD-NOTES):
    #: `$`, backticks and quotes would be expanded on the compute node; `,` and `:`
    #: split the list and the entry
    unsafe_path_chars: str = "$`\"'\\,:;&|<>()*?[]{}~#!"

    def pull_steps(self, executable: str, ref: ImageRef, dest: str, scratch: str) -> list[Step]:
        return [
            Step(
                [executable, "import", "-o", dest, enroot_uri(ref)],
                {"ENROOT_CACHE_PATH": scratch, "ENROOT_TEMP_PATH": scratch},
            )
        ]

    def container_name(self, ref: ImageRef) -> str:
        """The name ``enroot import`` would give: registry and ``library/`` dropped,
        ``/`` and ``:`` as ``+`` (used for the per-user ``enroot create``)."""
        name = ref.familiar_path + (f":{ref.effective_tag}" if ref.effective_tag else "")
        return name.replace("/", "+").replace(":", "+")

    def version_argv(self, executable: str) -> list[str]:
        return [executable, "version"]  # enroot's subcommand; it has no --version

    def fetch_hint(self, ref: ImageRef) -> str:
        return f"enroot import -o image.sqsh {enroot_uri(ref)}"
