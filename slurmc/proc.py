"""The one door to the outside: every external command goes through here.

Commands are argv lists (never ``shell=True``); failures become
:class:`~slurmc.errors.ExternalCommandError` carrying the last useful lines of
stderr, and a missing executable becomes :class:`~slurmc.errors.ToolMissingError`.
pytest-subprocess can stand in for every call made through this module.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from slurmc.errors import ExternalCommandError, ToolMissingError
from slurmc.values import Value

_HINTS = {
    "sbatch": "is this a Slurm login node? (SLURM_CONF and munge must work)",
    "salloc": "is this a Slurm login node? (SLURM_CONF and munge must work)",
}


def _cannot_run(tool: str, exc: OSError) -> ToolMissingError:
    import shutil

    where = shutil.which(tool) or tool
    return ToolMissingError(
        f"{tool} ({where}) exists but cannot be run ({exc.strerror}); check that it is an "
        "executable program (chmod +x) or put a working one first on PATH"
    )


class Result(Value):
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Result:
    """Run *argv*, capture its output, raise a domain error when it fails."""
    argv = [str(a) for a in argv]
    try:
        cp = subprocess.run(
            argv,
            input=input,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            # surrogateescape: bytes that are not UTF-8 (a file name, held in str as
            # os.fsdecode does) go out and come back unchanged instead of crashing
            encoding="utf-8",
            errors="surrogateescape",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ToolMissingError(
            f"{argv[0]} not found on PATH; {_HINTS.get(argv[0], 'install it or fix PATH')}"
        ) from None
    except OSError as exc:  # found but not runnable: EACCES, ENOEXEC...
        raise _cannot_run(argv[0], exc) from None
    except subprocess.TimeoutExpired as exc:
        raw = exc.stderr or ""
        err = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        raise ExternalCommandError(argv[0], -1, err + f"\ntimed out after {timeout:g} s") from None
    result = Result(tuple(argv), cp.returncode, cp.stdout or "", cp.stderr or "")
    if check and cp.returncode != 0:
        raise ExternalCommandError(argv[0], cp.returncode, result.stderr)
    return result


def run_foreground(
    argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Run *argv* attached to this terminal and return its exit status."""
    argv = [str(a) for a in argv]
    try:
        cp = subprocess.run(argv, cwd=cwd, env=dict(env) if env is not None else None, check=False)
    except FileNotFoundError:
        raise ToolMissingError(
            f"{argv[0]} not found on PATH; {_HINTS.get(argv[0], 'install it or fix PATH')}"
        ) from None
    except OSError as exc:
        raise _cannot_run(argv[0], exc) from None
    # A child killed by a signal: report it the way a shell would (128 + N).
    return cp.returncode if cp.returncode >= 0 else 128 - cp.returncode
