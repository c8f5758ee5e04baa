"""Enroot through Pyxis: ``srun --container-image=IMAGE.sqsh --container-mounts=...``.

Enroot finds NVIDIA GPUs through its hook (``NVIDIA_VISIBLE_DEVICES``, set by
Slurm's gres); it has no AMD hook, so no flag is rendered for either vendor.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Runtime


@dataclass(frozen=True)
class Enroot(Runtime):
    name: str = "enroot"
    template: str = "launch/enroot.sh.j2"
    suffix: str = ".sqsh"
    mounts_workdir: bool = True
