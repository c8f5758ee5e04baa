"""Submit a job, top down: plan → resolve the image → the venv → the image's facts →
render → submit (or run it in the foreground under salloc).

:func:`plan_job` is the first three steps; the CLI then calls :func:`ensure_image`,
:func:`ensure_venv`, :func:`apply_image_facts` and :func:`submit` or
:func:`run_interactive`, each taking the job the step before returned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from slurmc.core.job import Job, expand_output
from slurmc.core.plan import JobRequest, plan, with_venv
from slurmc.core.render import render_batch, render_step
from slurmc.core.sites import Site, resolve_site
from slurmc.values import Value, replace

if TYPE_CHECKING:
    from slurmc.backends import Backend, Submission
    from slurmc.cache.pull import Notify

__all__ = [
    "JobRequest",
    "plan_for_site",
    "plan_job",
    "render_batch",
    "render_step",
    "run_interactive",
    "submit",
]


class SubmitResult(Value):
    submission: Submission
    output: str | None
    tag: str = ""  # the unique tag in the job's --comment
    record: Path | None = None  # the job record, when it could be written
    warnings: tuple[str, ...] = ()
    error: str | None = None  # the --error file, when one was given


def plan_for_site(
    request: JobRequest, site_flag: str | None, env: Mapping[str, str], cwd: str
) -> Job:
    return plan_job(request, resolve_site(site_flag, env), env, cwd)


def plan_job(request: JobRequest, site: Site, env: Mapping[str, str], cwd: str) -> Job:
    """Plan (every value checked, nothing touched), resolve the image, add the venv."""
    from slurmc.usecases.resolve import resolve_job

    job = resolve_job(plan(request, site, env, cwd), cwd=cwd, env=env)
    if request.venv:
        from slurmc.usecases.venvs import find_venv, venv_binds

        found = find_venv(request.venv, env, cwd)
        job = with_venv(job, found.path, venv_binds(job.runtime.name, found))
    return job


def ensure_image(
    job: Job,
    env: Mapping[str, str],
    notify: Notify | None = None,
    ticker: Callable[[float, int], None] | None = None,
    *,
    refresh: bool = False,
) -> Job:
    """Pull a missing image (on this node, for sites that pull on the login node);
    *refresh*: pull a cached one again if its tag moved (``slurmc run --refresh``)."""
    image = job.image
    if refresh and image.source == "cache" and image.ref is not None:
        from slurmc.cache.manage import refresh_image
        from slurmc.cache.pull import PullOptions

        path = refresh_image(
            image.ref,
            job.runtime,
            job.roots,
            PullOptions(executable=job.site.executable),
            env,
            notify=notify or (lambda _: None),
        )
        return replace(job, image=replace(image, path=path))
    if image.source == "missing" and job.site.pull == "login":
        from slurmc.cache.pull import PullOptions, pull_into

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
        from slurmc.cache.layout import touch_used

        touch_used(image.path)
    return job


def ensure_venv(
    job: Job, env: Mapping[str, str], cwd: str, warn: Callable[[str], None] | None = None
) -> Job:
    """Make the job's venv mountable (unpacked once where the runtime binds a directory);
    warn when it was built on another image."""
    if job.venv is None:
        return job
    from slurmc.usecases.venvs import base_mismatch, find_venv, prepare

    venv = find_venv(job.venv, env, cwd)
    prepare(venv, job.runtime.name)
    warning = base_mismatch(venv, job.image.path)
    if warning and warn is not None:
        warn(warning)
    return job


def apply_image_facts(job: Job, env: Mapping[str, str]) -> Job:
    """What the image itself decides, read statically once per file identity
    (slurmc.usecases.imagefacts): for ``conda = "auto"``, activate with $WITH_CONDA only if the
    image defines it; whether it holds /ch/environment (ch-run --set-env).

    Where the image cannot be read (not yet pulled, a URI, an unknown format), the
    script keeps the guarded conda form and the runtime's default.
    """
    if job.image.source not in ("path", "cache", "catalog"):
        return job
    if job.conda != "auto" and not job.runtime.reads_image_environment:
        return job
    from slurmc.usecases.imagefacts import facts

    found = facts(env, job.image.path)
    if found is None:
        return job
    conda = job.conda
    if conda == "auto":
        conda = "with_conda" if found["with_conda"] is not None else "none"
    return replace(job, conda=conda, image_environment=found["ch_environment"])


def _backend(job: Job, env: Mapping[str, str]) -> Backend:
    # imported here: `--dry-run` and `--interactive` planning never pay for the backends
    from slurmc.backends import get_backend

    return get_backend(env.get("SLURMC_BACKEND") or job.site.backend)


def submit(
    job: Job,
    env: Mapping[str, str],
    cwd: str,
    *,
    notify: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SubmitResult:
    """Submit safely: tag the job, look the tag up before any retry, record the job.

    The retry rules are :func:`slurmc.backends.base.submit_safely`'s; the record is
    described in :mod:`slurmc.usecases.records`.
    """
    from slurmc.backends.base import new_tag, parse_delays, submit_safely
    from slurmc.backends.sbatch import SlurmCommands

    tag = new_tag()
    job, user_comment = _with_tag(job, tag)
    script = render_batch(job)  # render (and fail) before the backend is touched
    backend = _backend(job, env)
    queries = SlurmCommands()
    submitted_at = time.time()
    submission = submit_safely(
        lambda: backend.submit(script, cwd=cwd),
        lambda: queries.find_tagged(tag),
        queries.cancel,
        tag=tag,
        delays=parse_delays(env.get("SLURMC_SUBMIT_RETRY_DELAYS"), (10.0, 30.0)),
        sleep=sleep,
        notify=notify or (lambda _: None),
    )
    output = error = None
    if not job.resources.array:
        output = _log_path(job.resources.output, submission.job_id, job, env, cwd)
        error = _log_path(job.resources.error, submission.job_id, job, env, cwd)
    path, warnings = _record(
        job, env, cwd, submission, tag, user_comment, script, submitted_at, output, error
    )
    return SubmitResult(submission, output, tag, path, warnings, error)


def _log_path(
    pattern: str | None, job_id: str, job: Job, env: Mapping[str, str], cwd: str
) -> str | None:
    if not pattern:
        return None
    name = expand_output(pattern, job_id, job.resources.job_name or "", env.get("USER", ""))
    return os.path.normpath(os.path.join(cwd, name))


def _with_tag(job: Job, tag: str) -> tuple[Job, str | None]:
    """The job with its --comment carrying *tag*, after the user's own comment if any.

    A ``--sbatch-arg`` holding ``--comment`` (in any spelling sbatch accepts, such as
    ``--comm=x``) would override the tagged directive, so its value becomes the user's
    comment instead (the last one, as in sbatch); the other options are kept in sbatch's
    full spelling, so none of them can be read as a second ``--comment``.
    """
    from slurmc.backends.base import tagged_comment

    res = job.resources
    user, extra = res.split_comment()
    res = replace(res, comment=tagged_comment(user, tag), extra=extra)
    return replace(job, resources=res), user


def _record(
    job: Job,
    env: Mapping[str, str],
    cwd: str,
    submission: Submission,
    tag: str,
    user_comment: str | None,
    script: str,
    submitted_at: float,
    output: str | None,
    error: str | None,
) -> tuple[Path | None, tuple[str, ...]]:
    """Write the job record; failing to is a warning (the job is submitted either way)."""
    import shlex

    from slurmc.backends.sbatch import configured_cluster
    from slurmc.usecases import digests, records

    image = digests.image_identity(job.image.path, job.image.source)
    image.update({"spec": job.image.spec.text, "runtime": job.runtime.name})
    if job.image.source in ("cache", "catalog"):
        from slurmc.cache.provenance import read_meta

        digest = read_meta(job.image.path).get("digest")
        if digest:
            image["registry_digest"] = digest
    res = job.resources
    record = records.new_record(
        job_id=submission.job_id,
        cluster=submission.cluster or configured_cluster(env),
        site=job.site.name,
        site_source=job.site.source,
        tag=tag,
        comment=res.comment,
        user_comment=user_comment,
        submitted_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(submitted_at)),
        submit_host=os.uname().nodename,
        cwd=cwd,
        command=list(job.command),
        command_line=shlex.join(job.command),
        job_name=res.job_name,
        partition=res.partition,
        account=res.account,
        array=res.array,
        output=output,
        error=error,
        output_pattern=res.output,
        image=image,
        script=script,
        submit_attempts=submission.attempts,
        recovered_by_tag=submission.recovered,
        final=None,
    )
    try:
        digests.digest_at_submit(env, image)
        return records.write(env, record), ()
    except OSError as exc:
        where = records.jobs_dir(env)
        return None, (f"could not write the job record in {where}: {exc.strerror or exc}",)


def run_interactive(job: Job, env: Mapping[str, str], cwd: str) -> int:
    step = render_step(job)
    return _backend(job, env).run_interactive(job.resources.argv(), step, cwd=cwd)
