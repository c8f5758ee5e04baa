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
* Binds: both split ``-B`` with ``([^,^:]+:?)``, so ``^`` cannot be in a path there, and
  SingularityCE reads ``-B`` as CSV, so a ``"`` in a path fails the job (Apptainer's
  ``-B`` is a StringArray and carries it). Such binds go as
  ``--mount type=bind,source=S,destination=D`` instead, a CSV record both tools read
  (SingularityCE 3.11.5 and Apptainer 1.4.5 bound paths with ``^``, ``,`` and ``"``).
"""

from __future__ import annotations

from collections.abc import Sequence

from slurmc.grammar.refs import ImageRef
from slurmc.runtimes.base import Login, Runtime, Step, docker_uri

#: characters each flavour's -B cannot carry in a path (then: --mount)
_NOT_IN_B = {"apptainer": "^", "singularityce": '^"'}
#: slurmc's bind options and how --mount names them ("rw" is its default)
_MOUNT_OPTIONS = {"ro": "ro", "rw": None}


class Apptainer(Runtime):
    name: str = "apptainer"
    template: str = "launch/apptainer.sh.j2"
    suffix: str = ""  # Determined's singularity_image_root layout: no extension
    env_as_arguments: bool = True
    carries_non_utf8: bool = False
    accepts_uris: bool = True
    local_formats: tuple[str, ...] = ("sif",)
    mounts_squashfs: bool = True  # -B env.sqsh:/user-software:image-src=/

    @property
    def flavour(self) -> str:
        """``singularityce`` for sites of kind ``singularity``, else ``apptainer``."""
        return "singularityce" if self.name == "singularity" else "apptainer"

    def gpu_flags(self, vendor: str) -> list[str]:
        return {"amd": ["--rocm"], "nvidia": ["--nv"]}.get(vendor, [])

    def bind_args(self, binds: Sequence[str]) -> list[str]:
        """``-B A,B,...`` for the binds ``-B`` carries, ``--mount ...`` for the others."""
        plain = [b for b in binds if not any(c in b for c in _NOT_IN_B[self.flavour])]
        args = ["-B", ",".join(plain)] if plain else []
        for bind in binds:
            if bind not in plain:
                args += ["--mount", _mount_spec(bind)]
        return args

    def venv_bind(self, source: str, mount_point: str) -> str:
        return f"{source}:{mount_point}:image-src=/"

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
        # -B, or --mount for paths the flavour's -B cannot carry
        return [executable, "exec", *(self.bind_args(binds) if binds else []), image, *command]

    def pull_steps(
        self, executable: str, ref: ImageRef, dest: str, scratch: str, login: Login | None = None
    ) -> list[Step]:
        # Pull straight to a SIF file (the maintainers' advice: no shared layer cache);
        # the runtime's own cache goes to a private scratch directory. A login goes in
        # the variables both flavours document (APPTAINER_DOCKER_*, SINGULARITY_DOCKER_*).
        env = {"APPTAINER_CACHEDIR": scratch, "SINGULARITY_CACHEDIR": scratch}
        if login is not None:
            for prefix in ("APPTAINER", "SINGULARITY"):
                env[f"{prefix}_DOCKER_USERNAME"] = login.username
                env[f"{prefix}_DOCKER_PASSWORD"] = login.password
        return [Step([executable, "pull", dest, docker_uri(ref)], env)]

    def fetch_hint(self, ref: ImageRef) -> str:
        return f"{self.name} pull image.sif {docker_uri(ref)}"


def _mount_spec(bind: str) -> str:
    """``SRC[:DST[:OPT]]`` as the CSV record of ``--mount`` (Go's encoding/csv)."""
    src, _, rest = bind.partition(":")
    dst, _, opt = rest.partition(":")
    fields = ["type=bind", f"source={src}", f"destination={dst or src}"]
    if opt in _MOUNT_OPTIONS:
        word = _MOUNT_OPTIONS[opt]
        fields += [word] if word else []
    elif opt:  # image-src=PATH, id=N: the same words in --mount
        fields.append(opt)
    return ",".join(_csv_field(f) for f in fields)


def _csv_field(field: str) -> str:
    if any(c in field for c in '",\r\n') or field[:1] == " ":
        return '"' + field.replace('"', '""') + '"'
    return field


RUNTIMES = (Apptainer(), Apptainer(name="singularity"))
