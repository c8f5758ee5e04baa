"""The contract of a container runtime.

A runtime says how it names a cached image, which flag gives a container the
partition's GPUs, how the image is written on its command line, and which
launch template wraps the user's command. Adding a runtime is adding one
module here and one template in ``templates/launch/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InvalidReferenceError
from ..refs import DEFAULT_DOMAIN, ImageRef, is_domain_like

_FILENAME_MAX = 255


@dataclass(frozen=True)
class Step:
    """One external command of a pull, with environment additions."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Runtime:
    name: str = ""
    #: launch template, relative to the templates directory
    template: str = ""
    #: suffix of an image file in the cache (apptainer: none, like Determined's layout)
    suffix: str = ""
    #: whether the runtime needs the job's working directory mounted explicitly
    mounts_workdir: bool = False
    #: the format of a cached image file: "sif", "squashfs" or "oci-archive"
    format: str = "sif"
    #: ``--env`` values go to slurmc's wrapper inside the container as arguments (the
    #: runtime's own way to pass variables changes some values)
    env_as_arguments: bool = False
    #: the runtime passes bytes that are not UTF-8 through unchanged
    carries_non_utf8: bool = True
    #: the launch applies the image's own environment file when it has one (ch-run
    #: --set-env): slurmc reads whether it does (Job.image_environment)
    reads_image_environment: bool = False
    #: a bind may carry options (SRC:DST:OPTIONS)
    bind_options: bool = True
    #: characters the runtime's mount grammar cannot carry safely in a bind path or the
    #: working directory (Pyxis hands mounts to a file that enroot sources with bash):
    #: such paths are refused before anything is submitted
    unsafe_path_chars: str = ""

    def gpu_flags(self, vendor: str) -> list[str]:
        """Flags that expose the partition's GPUs (``amd``, ``nvidia`` or ``none``)."""
        return []

    def bind_args(self, binds: Sequence[str]) -> list[str]:
        """The runtime's flags for *binds* (runtimes whose template asks for them)."""
        raise NotImplementedError

    def image_arg(self, path: str) -> str:
        """How a resolved image file is named on this runtime's command line."""
        return path

    def pull_steps(self, executable: str, ref: ImageRef, dest: str, scratch: str) -> list[Step]:
        """The commands that write *ref* to the file *dest* (*scratch*: a private temp dir)."""
        raise NotImplementedError

    def version_argv(self, executable: str) -> list[str]:
        """The command that prints the runtime's version (``slurmc info``)."""
        return [executable, "--version"]

    def fetch_hint(self, ref: ImageRef) -> str:
        """What to run on a connected machine to get *ref* as a file for ``slurmc cache add``."""
        return f"apptainer pull image.sif {docker_uri(ref)}"

    def relpath_to_name(self, relpath: str) -> str:
        """The inverse of the runtime's own character mapping in :meth:`cache_relpath`."""
        return relpath

    def cache_relpath(self, ref: ImageRef) -> str:
        """The image's file name under a cache root (Determined's layout).

        ``determinedai/environments:TAG`` stays as it is, so caches written by
        manage-singularity-cache are used as they are; official images keep
        ``library/`` and other registries keep their host, so the mapping is
        injective; the result is relative and never contains ``..``.
        """
        first = ref.path.split("/", 1)[0]
        keep_domain = ref.domain != DEFAULT_DOMAIN or is_domain_like(first)
        name = f"{ref.domain}/{ref.path}" if keep_domain else ref.path
        if ref.domain != DEFAULT_DOMAIN and not is_domain_like(ref.domain):
            # a one-word registry (Enroot's myregistry#image): not myregistry/image,
            # which is the Docker Hub repository of user "myregistry"
            name = f"{ref.domain}#{ref.path}"
        if ref.effective_tag:
            name += f":{ref.effective_tag}"
        if ref.digest:
            name += f"@{ref.digest}"
        name += self.suffix
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):  # impossible by the grammar; kept as a guard
            raise InvalidReferenceError(f"{ref}: cannot be mapped to a cache file name")
        if any(len(p.encode()) > _FILENAME_MAX for p in parts):
            raise InvalidReferenceError(
                f"{ref}: a component is longer than {_FILENAME_MAX} bytes and cannot be a file name"
            )
        return name


def docker_uri(ref: ImageRef) -> str:
    """``docker://`` plus the reference as Docker names it (tag kept, implicit latest added)."""
    return "docker://" + pull_name(ref)


def pull_name(ref: ImageRef) -> str:
    """The reference as Docker-style tools (Apptainer, ch-image, podman) read it back."""
    if ref.domain != DEFAULT_DOMAIN and not is_domain_like(ref.domain):
        raise InvalidReferenceError(
            f"{ref}: registry {ref.domain!r} has no '.' or port, so only Enroot can name it "
            "(REGISTRY#IMAGE); give the registry's full host name"
        )
    name = ref.familiar_name
    if ref.effective_tag:
        name += f":{ref.effective_tag}"
    if ref.digest:
        name += f"@{ref.digest}"
    return name
