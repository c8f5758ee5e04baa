"""Podman: ``podman run --rm -v SRC:DST oci-archive:/path CMD`` (Determined's layout)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Runtime


@dataclass(frozen=True)
class Podman(Runtime):
    name: str = "podman"
    template: str = "launch/podman.sh.j2"
    suffix: str = ".oci.tar"
    mounts_workdir: bool = True

    def gpu_flags(self, vendor: str) -> list[str]:
        if vendor == "nvidia":
            return ["--device", "nvidia.com/gpu=all"]  # CDI, as NVIDIA's toolkit documents
        if vendor == "amd":
            return ["--device", "/dev/kfd", "--device", "/dev/dri", "--group-add", "keep-groups"]
        return []

    def image_arg(self, path: str) -> str:
        return path if path.startswith("oci-archive:") else f"oci-archive:{path}"
