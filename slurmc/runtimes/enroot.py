"""Enroot through Pyxis: ``srun --container-image=IMAGE.sqsh --container-mounts=...``.

Enroot finds NVIDIA GPUs through its hook (``NVIDIA_VISIBLE_DEVICES``, set by
Slurm's gres); it has no AMD hook, so no flag is rendered for either vendor.
"""

from __future__ import annotations

from collections.abc import Sequence

from slurmc.grammar.refs import DEFAULT_DOMAIN, ImageRef
from slurmc.runtimes.base import Login, Runtime, Step, UserCopy, netrc_line


def enroot_uri(ref: ImageRef) -> str:
    """Enroot's ``docker://[REGISTRY#]IMAGE[:TAG]`` (``#`` separates the registry)."""
    tag = f":{ref.effective_tag}" if ref.effective_tag else ""
    digest = f"@{ref.digest}" if ref.digest else ""
    if ref.domain == DEFAULT_DOMAIN:
        return f"docker://{ref.familiar_path}{tag}{digest}"
    return f"docker://{ref.domain}#{ref.path}{tag}{digest}"


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
    unsafe_path_grammar: str = "Pyxis's --container-mounts"
    #: `slurmc inspect --exec` runs enroot images on a node, through Pyxis (--on-node)
    local_exec: bool = False

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
        # enroot's --mount is an fstab line with ':' for blanks; x-create makes the mount point
        mounts = [f"{b}:none:x-create=auto,rbind" if b.count(":") == 1 else b for b in binds]
        return [executable, "start", *[w for m in mounts for w in ("--mount", m)], image, *command]

    def srun_argv(
        self,
        executable: str,
        image: str,
        command: Sequence[str],
        binds: Sequence[str] = (),
        options: Sequence[str] = (),
        *,
        fmt: str = "",
        network: bool = False,
    ) -> list[str]:
        """Pyxis: ``srun --container-image=IMAGE [--container-mounts=A,B] CMD``."""
        mounts = [f"--container-mounts={','.join(binds)}"] if binds else []
        base = ["srun", "--nodes=1", "--ntasks=1", *options]
        return [*base, f"--container-image={image}", *mounts, *command]

    def user_copy(self, executable: str, ref: ImageRef, path: str) -> UserCopy | None:
        name = self.container_name(ref)
        return UserCopy(name, [executable, "list"], [executable, "create", "--name", name, path])

    def pull_steps(
        self, executable: str, ref: ImageRef, dest: str, scratch: str, login: Login | None = None
    ) -> list[Step]:
        env = {"ENROOT_CACHE_PATH": scratch, "ENROOT_TEMP_PATH": scratch}
        files = {}
        if login is not None:
            # enroot reads $ENROOT_CONFIG_PATH/.credentials (netrc; curl parses it): a
            # private configuration directory holding only this login
            env["ENROOT_CONFIG_PATH"] = f"{scratch}/enroot-config"
            files["enroot-config/.credentials"] = netrc_line(login)
        return [Step([executable, "import", "-o", dest, enroot_uri(ref)], env, files)]

    def container_name(self, ref: ImageRef) -> str:
        """The name ``enroot import`` would give: registry and ``library/`` dropped,
        ``/`` and ``:`` as ``+`` (used for the per-user ``enroot create``)."""
        name = ref.familiar_path + (f":{ref.effective_tag}" if ref.effective_tag else "")
        return name.replace("/", "+").replace(":", "+")

    def version_argv(self, executable: str) -> list[str]:
        return [executable, "version"]  # enroot's subcommand; it has no --version

    def fetch_hint(self, ref: ImageRef) -> str:
        return f"enroot import -o image.sqsh {enroot_uri(ref)}"


RUNTIMES = (Enroot(),)
