"""Podman: ``podman run --rm -v SRC:DST oci-archive:/path CMD`` (Determined's layout)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from slurmc.errors import InvalidReferenceError
from slurmc.grammar.refs import ImageRef
from slurmc.runtimes.base import Login, Runtime, Step, pull_name


class Podman(Runtime):
    name: str = "podman"
    template: str = "launch/podman.sh.j2"
    suffix: str = ".oci.tar"
    mounts_workdir: bool = True
    format: str = "oci-archive"
    local_formats: tuple[str, ...] = ("oci-archive", "oci-layout")
    # the command, -e values and -v paths go into the OCI config (JSON): Go turns bytes
    # that are not UTF-8 into U+FFFD. Command words are escaped; other values refused.
    carries_non_utf8: bool = False
    escapes_non_utf8_argv: bool = True
    # -v SRC:DST[:OPTIONS] (the working directory too: -v "$PWD:$PWD") splits at ':'
    unsafe_path_chars: str = ":"
    unsafe_path_grammar: str = "podman's -v SRC:DST"

    def venv_bind(self, source: str, mount_point: str) -> str:
        return f"{source}:{mount_point}:ro"

    def exec_argv(
        self,
        executable: str,
        image: str,
        command: Sequence[str],
        binds: Sequence[str] = (),
        *,
        fmt: str = "",
        network: bool = False,
    ) -> list[str]:
        flags = [w for b in binds for w in ("-v", self.bind_spec(b))]
        ref = self.image_arg(image) if fmt in ("", "oci-archive") else image  # a layout: as is
        # no network unless asked for (a pip install): listing an image's packages needs
        # none, and podman 5's default network needs nftables (Debian 13), which a login
        # node may not have ("netavark: unable to execute nft")
        net = ["--network=host"] if network else ["--network=none"]
        return [executable, "run", "--rm", *net, *flags, ref, *command]

    def pull_steps(
        self, executable: str, ref: ImageRef, dest: str, scratch: str, login: Login | None = None
    ) -> list[Step]:
        name = pull_name(ref)
        if login is not None:  # a private auth file (containers-auth.json), as podman documents
            token = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
            auths = {"auths": {login.registry: {"auth": token}}}
            pull = Step(
                [executable, "pull", f"--authfile={scratch}/auth.json", name],
                files={"auth.json": json.dumps(auths)},
            )
        else:
            pull = Step([executable, "pull", name])
        return [
            pull,
            Step([executable, "save", "--format=oci-archive", "-o", dest, name]),
        ]

    def fetch_hint(self, ref: ImageRef) -> str:
        name = pull_name(ref)
        return f"podman pull {name} && podman save --format=oci-archive -o image.tar {name}"

    def gpu_flags(self, vendor: str) -> list[str]:
        if vendor == "nvidia":
            return ["--device", "nvidia.com/gpu=all"]  # CDI, as NVIDIA's toolkit documents
        if vendor == "amd":
            return ["--device", "/dev/kfd", "--device", "/dev/dri", "--group-add", "keep-groups"]
        return []

    def cache_relpath(self, ref: ImageRef) -> str:
        """Determined's layout with ``+`` for ``:``: podman refuses ``:`` in archive paths
        (``oci-archive:PATH[:REF]``). No reference holds ``+`` (but a digest algorithm may,
        which is refused), so the mapping stays injective."""
        if ref.digest and "+" in ref.digest.split(":", 1)[0]:
            raise InvalidReferenceError(f"{ref}: digest algorithms with '+' cannot be cached")
        return super().cache_relpath(ref).replace(":", "+")

    def relpath_to_name(self, relpath: str) -> str:
        return relpath.replace("+", ":")

    def bind_spec(self, bind: str) -> str:
        """``-v SRC`` alone is an anonymous volume mounted at SRC (empty, not the host's
        directory): a bind without a destination goes in as ``SRC:SRC``."""
        return bind if ":" in bind else f"{bind}:{bind}"

    def image_arg(self, path: str) -> str:
        return path if path.startswith("oci-archive:") else f"oci-archive:{path}"


RUNTIMES = (Podman(),)
