"""From a user's request to a fully resolved, validated :class:`Job`.

Everything here is checked before anything runs: a bad value stops the command
with one line naming the field, and no job is submitted.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigError, ValidationError
from .quoting import Quoted, comment, directive, has_control, sh, sh_join
from .refs import parse_image
from .resolve import ResolvedImage, Roots, resolve_image
from .resources import Resources, with_defaults
from .runtimes import Runtime, get_runtime
from .sites import Partition, Site, bundled_dir, config_home, expand

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class JobRequest:
    """What the user asked for, as typed."""

    image: str
    command: tuple[str, ...]
    resources: Mapping[str, str | None] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    conda: str | None = None  # None: the site's setting
    cache_dirs: tuple[str, ...] = ()
    catalogs: tuple[str, ...] = ()
    interactive: bool = False
    pty: bool = False  # the step gets a pseudo-terminal (slurmc shell)
    venv: str | None = None  # a venv name or .sqsh file (slurmc venv create), at /user-software


@dataclass(frozen=True)
class Job:
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
        return [sh(b) for b in self.binds]

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


def _default_job_name(command: tuple[str, ...]) -> str:
    base = os.path.basename(command[0]) if command else "job"
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", base)[:40] or "job"
    return f"slurmc-{base}"


def _check_bind(bind: str, runtime: Runtime, cwd: str) -> str:
    if has_control(bind) or "," in bind or not bind:
        raise ValidationError(
            f"--bind: {bind!r} may not be empty or hold commas or control characters"
        )
    parts = bind.split(":")
    if len(parts) > 3 or any(p == "" for p in parts):
        raise ValidationError(f"--bind: {bind!r} is not SRC[:DST[:OPTIONS]]")
    if not runtime.bind_options and len(parts) == 3:
        raise ValidationError(f"--bind: {bind!r}: {runtime.name} binds take SRC[:DST], no options")
    if len(parts) > 1 and not parts[1].startswith("/"):
        raise ValidationError(f"--bind: {bind!r}: the destination must be an absolute path")
    if not parts[0].startswith("/") and not parts[0].startswith("$"):
        parts[0] = os.path.normpath(os.path.join(cwd, parts[0]))
    return ":".join(parts)


def _check_paths_carried(runtime: Runtime, cwd: str, binds: tuple[str, ...]) -> None:
    """Refuse a working directory or bind path the runtime's mount grammar cannot carry."""
    bad = set(runtime.unsafe_path_chars)
    if not bad:
        return
    paths = [("the working directory", cwd)] if runtime.mounts_workdir else []
    paths += [(f"--bind {b}", part) for b in binds for part in b.split(":")[:2]]
    for what, path in paths:
        found = "".join(sorted(set(path) & bad))
        if found:
            raise ValidationError(
                f"{what}: {path!r} holds {found!r}, which {runtime.name} (Pyxis's "
                "--container-mounts) cannot carry safely; use a path without them"
            )


def _parse_env(items: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not _ENV_NAME.match(name):
            raise ValidationError(f"--env: {item!r} is not NAME=VALUE")
        out.append((name, value))
    return out


#: the site default image for a partition's GPU vendor (the seed's task_container_defaults)
DEFAULT_IMAGE_KIND = {"none": "cpu", "nvidia": "cuda", "amd": "rocm"}


def _image_or_site_default(image: str, site: Site, partition: Partition) -> tuple[str, str]:
    """The image asked for, else the site's default for the partition's GPUs, and a note."""
    if image:
        return image, ""
    kind = DEFAULT_IMAGE_KIND.get(partition.gpu_vendor, "cpu")
    ref = site.default_images.get(kind)
    if not ref:
        raise ValidationError(
            f"no IMAGE given, and site {site.name} has no default {kind} image "
            f"([images.defaults] {kind}); give IMAGE, or set image in the project's slurmc.toml"
        )
    where = partition.name or "the default partition"
    return ref, f"no IMAGE given: the site's default {kind} image for {where}, {ref}"


def _check_gpus_fit(site: Site, partition: Partition, resources: Resources) -> None:
    """GPUs asked of a partition the site file says has none: refuse, naming the ones
    that have GPUs (a partition the site file does not list is taken as it is)."""
    if resources.gpus_per_node is None or partition.name not in site.partitions:
        return
    if partition.gpu_vendor != "none":
        return
    gpu_parts = sorted(n for n, p in site.partitions.items() if p.gpu_vendor != "none")
    where = f"use one of {', '.join(gpu_parts)}" if gpu_parts else "this site lists none with GPUs"
    raise ValidationError(
        f"--gpus-per-node: partition {partition.name} of site {site.name} has no GPUs; "
        f"{where} (-p/--partition)"
    )


def site_roots(
    site: Site,
    env: Mapping[str, str],
    cache_dirs: tuple[str, ...] = (),
    catalogs: tuple[str, ...] = (),
) -> Roots:
    """The cache roots and catalogs for one invocation.

    ``--cache-dir``/``$SLURMC_CACHE_DIR`` and ``--catalog``/``$SLURMC_CATALOG`` replace
    the site's for that invocation. A site cache whose path needs an unset variable
    (LUMI's ``$PROJECT_ID``) is left out with the reason kept, so that catalogs and
    local files still work without it.
    """
    problems: list[str] = []

    def expand_all(dirs: tuple[str, ...], key: str) -> list[str]:
        out = []
        for d in dirs:
            try:
                out.append(expand(d, env, f"{site.source}: {key}"))
            except ConfigError as exc:
                problems.append(str(exc))
        return out

    caches = list(cache_dirs) or [d for d in env.get("SLURMC_CACHE_DIR", "").split(os.pathsep) if d]
    if not caches:
        caches = expand_all(site.cache, "images.cache")
    cats = list(catalogs) or [d for d in env.get("SLURMC_CATALOG", "").split(os.pathsep) if d]
    if not cats:
        cats = expand_all(site.catalogs, "images.catalogs")
    return Roots(tuple(dict.fromkeys(caches)), tuple(dict.fromkeys(cats)), tuple(problems))


def template_path(site: Site, env: Mapping[str, str]) -> tuple[str, ...]:
    """Where templates are looked up: the user's, the site's, then slurmc's own."""
    dirs = [str(config_home(env) / "templates")]
    if site.templates:
        dirs.append(site.templates)
    dirs.append(str(bundled_dir("templates")))
    return tuple(d for d in dirs if os.path.isdir(d))


def plan(request: JobRequest, site: Site, env: Mapping[str, str], cwd: str) -> Job:
    """Validate and resolve everything a job needs; raise before anything runs."""
    if not request.command:
        raise ValidationError("no command given; put it after IMAGE, e.g. IMAGE python train.py")
    runtime = get_runtime(site.runtime)

    given = dict(request.resources)
    if given.get("account") is None and site.account_env and env.get(site.account_env):
        given["account"] = env[site.account_env]
    if given.get("account") is None and site.account_required:
        source = f" or set ${site.account_env}" if site.account_env else ""
        raise ValidationError(f"site {site.name} needs an account: pass --account{source}")
    if given.get("partition") is None and site.default_partition:
        given["partition"] = site.default_partition
    partition = site.partition(given.get("partition"))
    values = with_defaults(given, partition.defaults, site.defaults)
    if values.get("job_name") is None:
        values["job_name"] = _default_job_name(request.command)
    if request.interactive:
        for name in ("output", "error", "array"):
            if values.get(name) is not None:
                raise ValidationError(f"--{name} does not apply to --interactive jobs")
    elif values.get("output") is None:
        values["output"] = "%x-%A_%a.out" if values.get("array") else "%x-%j.out"
    resources = Resources(**values, extra=request.extra)
    _check_gpus_fit(site, partition, resources)

    for word in request.command:
        if "\x00" in word:
            raise ValidationError("the command holds a NUL byte, which no process can receive")
        if not runtime.carries_non_utf8 and not _is_utf8(word):
            raise ValidationError(
                f"the command word {_shown(word)} holds bytes that are not UTF-8, which "
                f"{runtime.name} would change into U+FFFD; rename the file or pass the "
                "name another way (e.g. in a file)"
            )

    image_text, image_note = _image_or_site_default(request.image, site, partition)
    spec = parse_image(image_text)
    roots = Roots()
    if spec.kind in ("ref", "catalog"):  # expand the site's roots only when they are needed
        roots = site_roots(site, env, request.cache_dirs, request.catalogs)
    image = resolve_image(spec, runtime, roots, cwd=cwd, env=env)

    binds = tuple(_check_bind(b, runtime, cwd) for b in (*site.binds, *request.binds))
    _check_paths_carried(runtime, cwd, binds)
    venv = None
    if request.venv:
        from .venvs import find_venv, venv_binds

        found = find_venv(request.venv, env, cwd)
        binds += tuple(venv_binds(runtime.name, found))
        venv = found.path
    for bind in binds:
        if not runtime.carries_non_utf8 and not _is_utf8(bind):
            raise ValidationError(
                f"--bind: {_shown(bind)}: it holds bytes that are not UTF-8, which "
                f"{runtime.name} would change"
            )
    env_items = list(site.env.items()) + _parse_env(request.env)
    for name, value in env_items:
        if "\x00" in value:
            raise ValidationError(f"--env: the value of {name} holds a NUL byte")
        if not runtime.carries_non_utf8 and not _is_utf8(value):
            raise ValidationError(
                f"--env: the value of {name}, {_shown(value)}, holds bytes that are not "
                f"UTF-8, which {runtime.name} would change into U+FFFD; pass them in a file"
            )
    conda = request.conda or site.conda
    cpu_bind, notes = _gpu_binding(partition, resources, request.extra)
    if image_note:
        notes = (image_note, *notes)
    return Job(
        site=site,
        runtime=runtime,
        image=image,
        command=tuple(request.command),
        resources=resources,
        binds=binds,
        env=tuple(env_items),
        conda=conda,
        gpu_vendor=partition.gpu_vendor,
        template_path=template_path(site, env),
        cpu_bind=cpu_bind,
        notes=notes,
        pty=request.pty,
        venv=venv,
        gpu_flag=site.gpu_flag if partition.gpu_flag is None else partition.gpu_flag,
    )


def _gpu_binding(
    partition: Partition, resources: Resources, extra: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """LUMI-G style binding: task i to GPU i's cores, on whole-node allocations only.

    On a shared allocation the cores and GPUs a job gets are not the ones the masks
    name, so binding is skipped there and the user is told.
    """
    masks = partition.cpu_bind_masks
    if not masks or resources.gpus_per_node is None:
        return (), ()
    from .sbatch_options import parse

    # the --sbatch-arg options as sbatch reads them (--exclusiv, -s... in any spelling)
    exclusive = partition.whole_node or any(
        flag == "--exclusive" for arg in extra for flag, _ in parse(arg)
    )
    if not exclusive:
        return (), (
            f"GPU binding skipped: a {partition.name} allocation is shared with other jobs; "
            "it applies to whole nodes only (--sbatch-arg=--exclusive, or standard-g)",
        )
    tasks = resources.ntasks_per_node
    if tasks is not None and int(tasks) > len(masks):
        raise ValidationError(
            f"--ntasks-per-node={tasks}: GPU binding has {len(masks)} task slots per node "
            f"(one per GPU) on {partition.name}"
        )
    return masks, ()


def expand_output(pattern: str, job_id: str, job_name: str, user: str) -> str:
    """Fill Slurm's filename pattern for a single job, to tell the user where to look."""
    repl = {"j": job_id, "A": job_id, "x": job_name, "u": user, "%": "%"}
    return re.sub(r"%([%jAxu])", lambda m: repl[m.group(1)], pattern)


def _is_utf8(text: str) -> bool:
    """Whether *text* (bytes decoded with surrogateescape, as argv is) is valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    """*text* quoted for an error line, undecodable bytes shown as ``\\xNN``."""
    fixed = "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c for c in text)
    return repr(fixed).replace("\\\\x", "\\x")
