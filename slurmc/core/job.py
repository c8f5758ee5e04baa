"""A planned job: every value checked and quoted, as the templates print it.

:func:`slurmc.core.plan.plan` makes one from a user's request; the use cases fill in
the image's file (:mod:`slurmc.usecases.resolve`), the venv and the image's facts.
"""

from __future__ import annotations

import re
import sys

from slurmc.core.resources import Resources
from slurmc.core.roots import ResolvedImage, Roots
from slurmc.core.sites import Site
from slurmc.grammar.quoting import Quoted, comment, directive, is_utf8, printf_b, sh, sh_join
from slurmc.runtimes import Runtime
from slurmc.values import Value, field


class Job(Value):
    site: Site
    runtime: Runtime
    image: ResolvedImage
    command: tuple[str, ...]
    resources: Resources
    binds: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    conda: str  # "with_conda" | "none" | "auto"
    gpu_vendor: str
    template_path: tuple[str, ...]
    cpu_bind: tuple[str, ...] = ()  # per-task CPU masks (one task per GPU), if applied
    notes: tuple[str, ...] = ()  # what the user should know about this job's script
    venv: str | None = None  # a venv image (SquashFS) mounted at /user-software
    pty: bool = False
    #: whether the image holds Charliecloud's /ch/environment (None: not known)
    image_environment: bool | None = None
    gpu_flag: bool = True  # the site/partition wants the runtime's GPU flag (--rocm/--nv)
    #: where the image reference is looked up (slurmc.usecases.resolve)
    roots: Roots = field(default_factory=Roots)

    # ---- what templates print (all quoted) ---------------------------------------------
    @property
    def directives(self) -> list[Quoted]:
        return [directive(flag, value) for flag, value in self.resources.options()]

    @property
    def executable(self) -> Quoted:
        return sh(self.site.executable)

    @property
    def image_arg(self) -> Quoted:
        return sh(self.runtime.image_arg(self.image.path))

    @property
    def gpu_flags(self) -> list[Quoted]:
        if not self.gpu_flag:
            return []
        return [sh(f) for f in self.runtime.gpu_flags(self.gpu_vendor)]

    @property
    def bind_list(self) -> Quoted:
        """Binds as one comma-separated word (apptainer -B, pyxis --container-mounts)."""
        return sh(",".join(self.binds))

    @property
    def bind_args(self) -> Quoted:
        """The runtime's own bind flags, quoted (apptainer: a ``-B`` list, ``--mount``s)."""
        return sh_join(self.runtime.bind_args(self.binds))

    @property
    def bind_words(self) -> list[Quoted]:
        return [sh(self.runtime.bind_spec(b)) for b in self.binds]

    @property
    def env_pairs(self) -> list[tuple[Quoted, Quoted]]:
        return [(Quoted(k), sh(v)) for k, v in self.env]

    @property
    def srun_args(self) -> list[Quoted]:
        """Options of the job step itself (a pseudo-terminal, CPU binding).

        An interactive shell is one task on the allocation's first node: without
        ``--nodes=1 --ntasks=1`` srun would start one per node of a multi-node
        allocation, all but the first without the terminal.
        """
        args = [Quoted("--pty"), Quoted("--nodes=1"), Quoted("--ntasks=1")] if self.pty else []
        if self.cpu_bind:
            args.append(Quoted("--cpu-bind=mask_cpu:" + ",".join(self.cpu_bind)))
        return args

    @property
    def inner_steps(self) -> list[str]:
        """Shell commands run inside the container before the user's command."""
        steps = []
        if self.cpu_bind:  # each task sees the one GPU its cores sit next to
            var = {"nvidia": "CUDA_VISIBLE_DEVICES"}.get(self.gpu_vendor, "ROCR_VISIBLE_DEVICES")
            steps.append(f"export {var}=$SLURM_LOCALID")
        var = self.site.conda_variable
        if self.conda == "with_conda":
            steps.append(f"${var}")
        elif self.conda == "auto":
            steps.append(f'if [ -n "${{{var}:-}}" ]; then ${var}; fi')
        if self.venv:
            steps.append("source /user-software/bin/activate")
        return steps

    @property
    def entry(self) -> Quoted:
        """The command inside the container, after the inner steps (conda activation...).

        The steps are single-quoted so that ``$WITH_CONDA`` expands inside the
        container, never on the host; the user's words follow as ``"$@"``, so they
        arrive byte for byte whatever they hold. srun takes a word that is exactly
        ``:`` anywhere on its command line as the separator of a heterogeneous job,
        so when the command holds one, every word goes in with a ``+`` in front and
        the inner script takes it off again.

        On runtimes whose own way of passing variables changes values (Apptainer and
        SingularityCE evaluate ``--env`` values in a shell, see runtimes/apptainer.py),
        the variables come first as ``NAME=VALUE`` arguments, exported by the inner
        script before anything else: arguments arrive exactly.
        """
        steps = self.inner_steps
        words = list(self.command)
        pairs = [f"{k}={v}" for k, v in self.env] if self.runtime.env_as_arguments else []
        run = 'exec "$@"'
        if self.runtime.escapes_non_utf8_argv and not all(is_utf8(w) for w in words):
            return self._escaped_entry(steps, pairs, words)
        if ":" in words:
            words = ["+" + w for w in words]
            run = 'a=(); for w in "$@"; do a+=("${w#+}"); done; exec "${a[@]}"'
        elif not steps and not pairs:
            return sh_join(words)
        if pairs:  # never a bare ':' (NAME=VALUE): srun leaves them alone
            steps = [f'export "${{@:1:{len(pairs)}}}"', f"shift {len(pairs)}", *steps]
            words = pairs + words
        script = " && ".join([*steps, run]) if steps else run
        return Quoted(f"bash -c {sh(script)} slurmc {sh_join(words)}")

    @staticmethod
    def _escaped_entry(steps: list[str], pairs: list[str], words: list[str]) -> Quoted:
        """The entry for a runtime that would turn bytes that are not UTF-8 into U+FFFD:
        every argument goes in as ``printf %b`` octal escapes behind a ``+`` (ASCII for
        those bytes, never a bare ``:`` for srun) and a POSIX loop inside the container
        turns it back into bytes; ``x`` keeps trailing newlines from ``$(...)``."""
        if pairs:
            steps = [f'export "${{@:1:{len(pairs)}}}"', f"shift {len(pairs)}", *steps]
        decode = (
            'n=$#; while [ "$n" -gt 0 ]; do w=$(printf "%bx" "${1#+}"); shift; '
            'set -- "$@" "${w%x}"; n=$((n-1)); done'
        )
        script = "; ".join([decode, " && ".join([*steps, 'exec "$@"'])])
        shell = "bash" if steps else "sh"  # the steps may be bash's; the loop is POSIX
        escaped = ["+" + printf_b(w) for w in (*pairs, *words)]
        return Quoted(f"{shell} -c {sh(script)} slurmc {sh_join(escaped)}")

    @property
    def pull_step(self) -> Quoted | None:
        """For sites that pull inside the job: the command that pulls a missing image first."""
        if self.image.source != "missing" or self.site.pull != "job":
            return None
        argv = [
            sys.executable,
            "-m",
            "slurmc",
            "cache",
            "pull",
            "--site",
            self.site.source,
            "--cache-dir",
            self.image.root or "",
            self.image.spec.text,
        ]
        return sh_join(argv)

    @property
    def header(self) -> list[Quoted]:
        note = {"missing": " (not cached yet: pulled before the job runs)"}
        lines = [
            f"Rendered by slurmc for site {self.site.name} (runtime {self.runtime.name}).",
            f"Image: {self.image.spec.text} -> {self.image.path}" + note.get(self.image.source, ""),
            *(f"Note: {n}" for n in self.notes),
        ]
        return [comment(line) for line in lines]


def expand_output(pattern: str, job_id: str, job_name: str, user: str) -> str:
    """Fill Slurm's filename pattern for a single job, to tell the user where to look."""
    repl = {"j": job_id, "A": job_id, "x": job_name, "u": user, "%": "%"}
    return re.sub(r"%([%jAxu])", lambda m: repl[m.group(1)], pattern)
