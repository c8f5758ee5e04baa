"""Reading container images as files: SIF, SquashFS, OCI archives and directories.

Nothing here starts a container or a job. :mod:`.sif` parses the Singularity Image
Format, :mod:`.squashfs` reads a SquashFS file system (alone or inside a SIF file)
through squashfs-tools, :mod:`.oci` reads OCI/Docker archives and layouts, and
:mod:`.contents` finds the OS, Python interpreters, conda environments and pip
packages in any of them through the small :class:`~.contents.FileTree` contract.
"""

from __future__ import annotations

from slurmc.errors import SlurmcError


class ImageFormatError(SlurmcError):
    """An image file is malformed, truncated, or of a kind slurmc cannot read."""


__all__ = ["ImageFormatError"]
