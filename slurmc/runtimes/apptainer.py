"""Apptainer and SingularityCE: ``singularity exec [--rocm|--nv] -B ... IMAGE CMD``.

Two flavours, told apart by the site's ``runtime.kind``: ``apptainer`` (Apptainer) and
``singularity`` (SingularityCE, e.g. LUMI). What both really do, checked against their
sources (spf13/pflag v1.0.10) and real runs (Apptainer 1.1.9 and 1.4.5, SingularityCE
3.11.5):

* ``--env`` is pflag's stringToString: a value with one ``=`` only loses its outer
  ``"``, with more it is read as CSV; then the value is shell-evaluated inside the
  container (``$HOME``, backticks), a trailing ``\\`` drops every variable, and nothing
  is set at all when the image lacks ``/.singularity.d/env/99-base.sh``. So slurmc never
  renders ``--env``: the variables go as ``NAME=VALUE`` arguments to its own wrapper
  inside the container, which exports them (arguments arrive exactly).
* Arguments (and variables) that are not UTF-8 arrive as U+FFFD: refused up front.
* Binds: both split ``-B`` with ``([^,^:]+:?)``, so ``^`` and ``,`` cannot be in a path;
  SingularityCE reads ``-B`` as CSV, so a ``"`` in a path fails the job there (Apptainer's
  ``-B`` is a StringArray and carries it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..refs import ImageRef
from .base import Runtime, Step, docker_uri

#: characters each flavour's -B parser cannot carry in a path, with the reason
_BIND_SPLITS = {"^": "splits bind paths at '^'", ",": "splits bind lists at ','"}
_BIND_CSV = {'"': "reads -B as CSV, where a '\"' in a path is an error"}


@dataclass(frozen=True)
class Apptainer(Runtime):
    name: str = "apptainer"
    template: str = "launch/apptainer.sh.j2"
    suffix: str = ""  # Determined's singularity_image_root layout: no extension
    env_as_arguments: bool = True
    carries_non_utf8: bool = False

    @property
    def flavour(self) -> str:
        """``singularityce`` for sites of kind ``singularity``, else ``apptainer``."""
        return "singularityce" if self.name == "singularity" else "apptainer"

    def gpu_flags(self, vendor: str) -> list[str]:
        return {"amd": ["--rocm"], "nvidia": ["--nv"]}.get(vendor, [])

    def bind_problem(self, bind: str) -> str | None:
        rules = dict(_BIND_SPLITS)
        if self.flavour == "singularityce":
            rules.update(_BIND_CSV)
        tool = {"singularityce": "SingularityCE", "apptainer": "Apptainer"}[self.flavour]
        for char, why in rules.items():
            if char in bind:
                return f"{tool} {why}; bind a parent directory or a link without it instead"
        return None

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
