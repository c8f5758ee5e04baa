"""Apptainer and SingularityCE: ``singularity exec [--rocm|--nv] -B ... IMAGE CMD``."""

from __future__ import annotations

from dataclasses import dataclass

from ..refs import ImageRef
from .base import Runtime, Step, docker_uri


@dataclass(frozen=True)
class Apptainer(Runtime):
    name: str = "apptainer"
    template: str = "launch/apptainer.sh.j2"
    suffix: str = ""  # Determined's singularity_image_root layout: no extension

    def gpu_flags(self, vendor: str) -> list[str]:
        return {"amd": ["--rocm"], "nvidia": ["--nv"]}.get(vendor, [])

    def pull_steps(self, executable: str, ref: ImageRef, dest: str, scratch: str) -> list[Step]:
        # Pull straight to a SIF file (the maintainers' advice: no shared layer cache);
        # the runtime's own cache goes to a private scratch directory.
        return [
            Step(
                [executable, "pull", dest, docker_uri(ref)],
                {"APPTAINER_CACHEDIR": scratch, "SINGULARITY_CACHEDIR": scratch},
            )
        ]

    def fetch_hint(self, ref: ImageRef) -> str:
        return f"{self.name} pull image.sif {docker_uri(ref)}"
