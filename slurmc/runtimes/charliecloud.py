"""Charliecloud: ``ch-run -b SRC:DST IMAGE.sqfs -- CMD`` on SquashFS images.

ch-run needs no GPU flag (device files are shared with the host); ``--set-env``
applies the image's own environment (``/ch/environment``, e.g. ``$WITH_CONDA``);
it refuses to start without ``$USER``, which the launch template sets when missing.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Sequence

from slurmc.grammar.refs import ImageRef
from slurmc.runtimes.base import Login, Runtime, Step, pull_name


def _user() -> str:
    return os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name


# ch-image runs under Debian's python3 with its python3-lark: keep /usr/bin first.
_SYSTEM_PATH = {"PATH": "/usr/bin:/bin"}


class Charliecloud(Runtime):
    name: str = "charliecloud"
    template: str = "launch/charliecloud.sh.j2"
    suffix: str = ".sqfs"
    format: str = "squashfs"
    #: the job's variables go to the inner wrapper as arguments: exported inside the
    #: container only, never into the batch script's own environment (a PATH meant for
    #: the container must not change which srun the script runs)
    env_as_arguments: bool = True
    bind_options: bool = False  # ch-run -b SRC[:DST]
    reads_image_environment: bool = True  # --set-env: /ch/environment
    default_executable: str = "ch-run"
    local_formats: tuple[str, ...] = ("squashfs", "directory")

    def venv_bind(self, source: str, mount_point: str) -> str:
        return f"{source}:{mount_point}"  # ch-run binds take no options (and are read-write)

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
        # --set-env reads /ch/environment, where Charliecloud images keep WITH_CONDA
        flags = [w for b in binds for w in ("-b", b)]
        return [executable, "--set-env", *flags, image, "--", *command]

    def build_hint(self, stderr: str, mount_point: str) -> str | None:
        if mount_point not in stderr:
            return None
        return (
            f"ch-run binds only onto directories the image has: add `RUN mkdir {mount_point}` "
            "to the image's Dockerfile"
        )

    def pull_steps(
        self, executable: str, ref: ImageRef, dest: str, scratch: str, login: Login | None = None
    ) -> list[Step]:
        # A private ch-image storage per pull: concurrent pulls never share one (ch-image
        # fails at once on a storage in use), and ch-image must create it itself.
        name = pull_name(ref)
        storage = f"{scratch}/ch-image"
        auth: list[str] = []
        secret: dict[str, str] = {}
        if login is not None:
            auth = ["--auth"]
            secret = {"CH_IMAGE_USERNAME": login.username, "CH_IMAGE_PASSWORD": login.password}
        return [
            # ch-image refuses to run without $USER ("can't get username"); --no-cache: its
            # build cache commits with git, which fails where git has no identity (a fresh
            # machine), and a throwaway storage gains nothing from it
            # a login: --auth, with the variables ch-image reads (it prompts without them)
            Step(
                ["ch-image", "-s", storage, "--no-cache", *auth, "pull", name],
                {**_SYSTEM_PATH, "USER": _user(), **secret},
            ),
            Step(  # ch-convert runs ch-image itself: $USER again
                ["ch-convert", "-i", "ch-image", "-o", "squash", name, dest],
                # its work directory in ours: a killed or failed ch-convert leaves it
                # behind (empty ch-convert.* directories piled up in /var/tmp here)
                {**_SYSTEM_PATH, "CH_IMAGE_STORAGE": storage, "USER": _user(), "TMPDIR": scratch},
            ),
        ]

    def fetch_hint(self, ref: ImageRef) -> str:
        name = pull_name(ref)
        return f"ch-image pull {name} && ch-convert {name} image.sqfs"


RUNTIMES = (Charliecloud(),)
