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


class ExternalCommandError(SlurmcError):
    """An external command failed; carries the useful lines of its stderr."""

    def __init__(self, tool: str, returncode: int, stderr: str, hint: str = "") -> None:
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        detail = " | ".join(lines[-3:]) if lines else "no error output"
        msg = f"{tool} failed (exit {returncode}): {detail}"
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
