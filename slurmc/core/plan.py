"""From a user's request to a validated :class:`~slurmc.core.job.Job`.

Everything here is checked before anything runs: a bad value stops the command
with one line naming the field, and no job is submitted. Nothing here touches the
image cache: the plan names the image and where to look for it; the use case
resolves it next (the pipeline is in :mod:`slurmc.usecases.submit`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from slurmc.core.job import Job
from slurmc.core.resources import Resources, with_defaults
from slurmc.core.roots import ResolvedImage, Roots, site_roots
from slurmc.core.sites import Partition, Site
from slurmc.errors import ValidationError
from slurmc.grammar.quoting import has_control
from slurmc.grammar.quoting import is_utf8 as _is_utf8
from slurmc.grammar.refs import parse_image
from slurmc.paths import bundled_dir, config_home
from slurmc.runtimes import Runtime, get_runtime
from slurmc.values import Value, field, replace

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class JobRequest(Value):
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
                f"{what}: {path!r} holds {found!r}, which {runtime.name} cannot carry "
                f"safely ({runtime.unsafe_path_grammar}); use a path without them"
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
        if runtime.carries_non_utf8 or runtime.escapes_non_utf8_argv:
            continue
        if not _is_utf8(word):
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

    binds = tuple(_check_bind(b, runtime, cwd) for b in (*site.binds, *request.binds))
    _check_paths_carried(runtime, cwd, binds)
    for bind in binds:
        _check_carried(runtime, bind)
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
        image=ResolvedImage(spec, spec.text, "pending"),  # slurmc.usecases.resolve
        roots=roots,
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
    from slurmc.grammar.sbatch_options import parse

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


def with_venv(job: Job, path: str, binds: Sequence[str]) -> Job:
    """The job with a venv (its file *path*) mounted through *binds*
    (:func:`slurmc.usecases.venvs.venv_binds`)."""
    for bind in binds:
        _check_carried(job.runtime, bind)
    return replace(job, binds=(*job.binds, *binds), venv=path)


def _check_carried(runtime: Runtime, bind: str) -> None:
    if not runtime.carries_non_utf8 and not _is_utf8(bind):
        raise ValidationError(
            f"--bind: {_shown(bind)}: it holds bytes that are not UTF-8, which "
            f"{runtime.name} would change"
        )


def _shown(text: str) -> str:
    """*text* quoted for an error line, undecodable bytes shown as ``\\xNN``."""
    fixed = "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c for c in text)
    return repr(fixed).replace("\\\\x", "\\x")
