"""Render sbatch scripts from Jinja2 templates: a pure function of the job.

Templates may only print values that went through a quoting filter (``|q`` for
bash words, values prepared as :class:`~slurmc.grammar.quoting.Quoted` by the job);
printing a raw string is a template error, so a site's or user's override
cannot splice an unquoted value into a script by accident.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from slurmc import __version__
from slurmc.errors import TemplateError
from slurmc.grammar.quoting import Quoted, sh, sh_join
from slurmc.paths import cache_home

if TYPE_CHECKING:
    import jinja2

    from slurmc.core.job import Job


def _finalize(value: Any) -> Any:
    if isinstance(value, Quoted | int) and not isinstance(value, bool):
        return value
    if value is None or value == "":
        return ""
    raise TemplateError(
        f"template prints the unquoted value {str(value)[:40]!r}; pass it through |q"
    )


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs, so a submission does not compile them again.

    Jinja2's file cache, keyed on each template's name and the checksum of its text (an
    edited template is compiled again), in the user's own 0700 directory
    ``$XDG_CACHE_HOME/slurmc/jinja2-VERSION`` (the directory name changes with slurmc's
    version, whose environment settings shape the compiled code; Jinja2 adds its own
    and Python's version to each file). Where it cannot be made, templates are simply
    compiled each time.
    """
    import jinja2

    directory = str(cache_home(os.environ) / f"jinja2-{__version__}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not a private directory of ours: do not load code from it
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(directory)


@lru_cache(maxsize=8)
def _environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        bytecode_cache=_bytecode_cache(),
        loader=jinja2.FileSystemLoader(list(search_path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
        autoescape=False,
    )
    env.filters["q"] = sh
    env.filters["qjoin"] = sh_join
    return env


def render(template: str, search_path: Sequence[str], **context: Any) -> str:
    import jinja2

    env = _environment(tuple(search_path))
    try:
        return env.get_template(template).render(version=Quoted(__version__), **context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name!r} not found in {', '.join(search_path)}"
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {template}: {exc}") from None


def render_batch(job: Job) -> str:
    """The whole sbatch script: directives, then the launch step."""
    return render("sbatch.sh.j2", job.template_path, job=job)


def render_step(job: Job) -> str:
    """Only the launch step (what ``salloc`` runs in the foreground)."""
    return render("step.sh.j2", job.template_path, job=job)
