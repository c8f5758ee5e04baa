"""Apptainer and SingularityCE: ``singularity exec [--rocm|--nv] -B ... IMAGE CMD``."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Runtime


@dataclass(frozen=True)
class Apptainer(Runtime):
    name: str = "apptainer"
    template: str = "launch/apptainer.sh.j2"
    suffix: str = ""  # Determined's singularity_image_root layout: no extension

    def gpu_flags(self, vendor: str) -> list[str]:
        return {"amd": ["--rocm"], "nvidia": ["--nv"]}.get(vendor, [])
