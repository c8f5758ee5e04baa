"""Run a job: plan it, render it, hand it to a backend. The CLI's one entry to the core."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .backends import Backend, Submission, get_backend
from .cache.layout import touch_used
from .job import Job, JobRequest, expand_output, plan
from .render import render_batch, render_step
from .sites import Site, resolve_site

if TYPE_CHECKING:
    from .cache.pull import Notify

__all__ = [
    "JobRequest",
    "describe_site",
    "plan_for_site",
    "render_batch",
    "render_step",
    "run_interactive",
    "submit",
]


@dataclass(frozen=True)
class SubmitResult:
    submission: Submission
    output: str | None


def plan_for_site(
    request: JobRequest, site_flag: str | None, env: Mapping[str, str], cwd: str
) -> Job:
    site = resolve_site(site_flag, env)
    return plan(request, site, env, cwd)


def ensure_image(
    job: Job,
    env: Mapping[str, str],
    notify: Notify | None = None,
    ticker: Callable[[float, int], None] | None = None,
) -> Job:
    """Pull a missing image (on this node, for sites that pull on the login node)."""
    image = job.image
    if image.source == "missing" and job.site.pull == "login":
        from .cache.pull import PullOptions, pull_into

        assert image.ref is not None and image.root is not None
        options = PullOptions(executable=job.site.executable)
        path = pull_into(
            image.ref,
            job.runtime,
            image.root,
            options,
            env,
            notify=notify or (lambda _: None),
            ticker=ticker,
        )
        return replace(job, image=replace(image, path=path, source="cache"))
    if image.source in ("cache", "catalog"):
        touch_used(image.path)
    return job


def decide_conda(job: Job) -> Job:
    """For ``conda = "auto"``: activate with $WITH_CONDA only if the image defines it.

    The image file is read statically (slurmc inspect's reader, no container). Where it
    cannot be read (not yet pulled, a URI, an unknown format), the script keeps the
    guarded form that checks for the variable inside the container.
    """
    if job.conda != "auto" or job.image.source not in ("path", "cache", "catalog"):
        return job
    from .errors import SlurmcError
    from .images import ImageFormatError
    from .inspect import inspect_image

    try:
        defined = inspect_image(job.image.path).contents.with_conda is not None
    except (SlurmcError, ImageFormatError, OSError):
        return job
    return replace(job, conda="with_conda" if defined else "none")


def _backend(job: Job, env: Mapping[str, str]) -> Backend:
    return get_backend(env.get("SLURMC_BACKEND") or job.site.backend)


def submit(job: Job, env: Mapping[str, str], cwd: str) -> SubmitResult:
    script = render_batch(job)  # render (and fail) before the backend is touched
    submission = _backend(job, env).submit(script, cwd=cwd)
    output = None
    if job.resources.output and not job.resources.array:
        name = expand_output(
            job.resources.output,
            submission.job_id,
            job.resources.job_name or "",
            env.get("USER", ""),
        )
        output = os.path.normpath(os.path.join(cwd, name))
    return SubmitResult(submission, output)


def run_interactive(job: Job, env: Mapping[str, str], cwd: str) -> int:
    step = render_step(job)
    return _backend(job, env).run_interactive(job.resources.argv(), step, cwd=cwd)


def describe_site(site: Site) -> str:
    lines = [
        f"site:        {site.name}  ({site.source})",
        f"description: {site.description}",
        f"runtime:     {site.runtime} ({site.executable})",
        f"backend:     {site.backend}",
        f"cache:       {', '.join(site.cache) or '-'}",
        f"catalogs:    {', '.join(site.catalogs) or '-'}",
        f"conda:       {site.conda} (${site.conda_variable})",
        f"binds:       {', '.join(site.binds) or '-'}",
        f"env:         {', '.join(f'{k}={v}' for k, v in site.env.items()) or '-'}",
        f"account:     {'$' + site.account_env if site.account_env else '-'}"
        + (" (required)" if site.account_required else ""),
        f"defaults:    {', '.join(f'{k}={v}' for k, v in site.defaults.items()) or '-'}",
        "partitions:",
    ]
    for p in site.partitions.values():
        mark = " (default)" if p.name == site.default_partition else ""
        gpus = f"{p.gpus_per_node} x {p.gpu_vendor} GPU" if p.gpu_vendor != "none" else "no GPUs"
        cores = f", {p.cores_per_node} cores" if p.cores_per_node else ""
        lines.append(f"  {p.name}{mark}: {gpus}{cores}")
    for kind, ref in site.default_images.items():
        lines.append(f"default image {kind}: {ref}")
    return "\n".join(lines)
