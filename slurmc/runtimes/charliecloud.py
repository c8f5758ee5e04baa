"""Charliecloud: ``ch-run -b SRC:DST IMAGE.sqfs -- CMD`` on SquashFS images.

ch-run needs no GPU flag (device files are shared with the host); it refuses to
start without ``$USER``, which the launch template sets when the job lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Runtime


@dataclass(frozen=True)
class Charliecloud(Runtime):
    name: str = "charliecloud"
    template: str = "launch/charliecloud.sh.j2"
    suffix: str = ".sqfs"
