"""The domain errors slurmc raises.

The CLI catches :class:`SlurmcError` once, prints its message on one line and
exits non-zero; every message says what failed, the value, and what to do next.
"""

from __future__ import annotations


class SlurmcError(Exception):
    """Base class: a user-facing failure with a one-line message."""

    exit_code = 1


class ConfigError(SlurmcError):
    """A site file or user config file is invalid."""


class InvalidReferenceError(SlurmcError):
    """An image reference does not parse."""


class ValidationError(SlurmcError):
    """A job option has a value that cannot be used (e.g. a control character)."""


class ImageNotFoundError(SlurmcError):
    """An image reference resolves to no local file."""


class TemplateError(SlurmcError):
    """A (site or user) template failed to render."""


class ToolMissingError(SlurmcError):
    """An external command is not on PATH."""


#: What Slurm's commands print when they find no slurm.conf (no SLURM_CONF, no
#: /etc/slurm/slurm.conf, no DNS SRV record), and what to do about it.
SLURM_NO_CONFIG = ("Could not establish a configuration source", "resolve_ctls_from_dns_srv")
SLURM_CONFIG_FIX = (
    "export SLURM_CONF=/path/to/slurm.conf (for the local test cluster: "
    'eval "$(scripts/env)"), or run on the cluster\'s login node'
)


def slurm_config_missing(stderr: str) -> bool:
    return any(marker in stderr for marker in SLURM_NO_CONFIG)


class ExternalCommandError(SlurmcError):
    """An external command failed; carries the useful lines of its stderr."""

    def __init__(self, tool: str, returncode: int, stderr: str, hint: str = "") -> None:
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr
        # bytes that are not UTF-8 (kept by the door as surrogates) shown as U+FFFD
        shown = stderr.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        lines = [ln.strip() for ln in shown.splitlines() if ln.strip()]
        detail = " | ".join(lines[-3:]) if lines else "no error output"
        msg = f"{tool} failed (exit {returncode}): {detail}"
        if slurm_config_missing(stderr):  # Slurm's raw DNS SRV text helps nobody
            msg = f"{tool} cannot find the Slurm cluster's configuration"
            hint = SLURM_CONFIG_FIX
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class SubmissionError(SlurmcError):
    """sbatch answered, but not with something slurmc understands."""


class CacheError(SlurmcError):
    """The image cache cannot be used as asked (read-only, full, corrupt...)."""


class LockTimeoutError(CacheError):
    """Waiting for another caller's pull of the same image took too long."""


class PullError(SlurmcError):
    """Pulling an image failed; nothing was published."""
