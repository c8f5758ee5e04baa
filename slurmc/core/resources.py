"""Slurm resource options: validation, defaults, and the option list they become.

Every value that reaches an ``#SBATCH`` line or a salloc argument passes through
here first: formats Slurm would reject are refused with the field named, and
control characters (which would inject directives) are refused everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from slurmc.errors import ConfigError, ValidationError
from slurmc.grammar.quoting import check_directive_value
from slurmc.values import Value, field, fields

# re.ASCII: \d is [0-9] only; Unicode digits (``١٢٣``) would pass and fail later in sbatch
_TIME = re.compile(
    r"(?:\d+-\d+(?::\d{1,2}){0,2}|\d+(?::\d{1,2}){0,2}|UNLIMITED|INFINITE)\Z", re.ASCII
)
_MEM = re.compile(r"\d+[KMGTkmgt]?\Z", re.ASCII)
_NODES = re.compile(r"\d+(?:-\d+)?\Z", re.ASCII)
_POSITIVE = re.compile(r"[1-9]\d*\Z", re.ASCII)
_GPUS = re.compile(r"(?:[A-Za-z0-9_.-]+:)?\d+\Z", re.ASCII)
_ARRAY = re.compile(r"[0-9][0-9,:%-]*\Z", re.ASCII)
_DEPENDENCY = re.compile(r"[A-Za-z0-9_:,?+-]+\Z", re.ASCII)
_NAME_LIST = re.compile(r"[A-Za-z0-9_.,-]+\Z", re.ASCII)


def _matcher(pattern: re.Pattern[str], expected: str) -> Callable[[str, str], None]:
    def check(fieldname: str, value: str) -> None:
        if not pattern.match(value):
            raise ValidationError(f"--{fieldname}: {value!r} is not valid; expected {expected}")

    return check


def _free_text(fieldname: str, value: str) -> None:
    if value == "":
        raise ValidationError(f"--{fieldname}: the value is empty")


#: field -> (sbatch option, validator). Order is the order of the #SBATCH lines.
OPTIONS: dict[str, tuple[str, Callable[[str, str], None]]] = {
    "job_name": ("--job-name", _free_text),
    "account": ("--account", _matcher(_NAME_LIST, "an account name such as project_465000000")),
    "partition": ("--partition", _matcher(_NAME_LIST, "a partition name (or a comma list)")),
    "nodes": ("--nodes", _matcher(_NODES, "a node count N or MIN-MAX")),
    "ntasks_per_node": ("--ntasks-per-node", _matcher(_POSITIVE, "a whole number >= 1")),
    "cpus_per_task": ("--cpus-per-task", _matcher(_POSITIVE, "a whole number >= 1")),
    "gpus_per_node": ("--gpus-per-node", _matcher(_GPUS, "a GPU count N or TYPE:N")),
    "mem": ("--mem", _matcher(_MEM, "a size such as 4000, 8G or 500M")),
    "time": (
        "--time",
        _matcher(_TIME, "MIN, MIN:SEC, H:M:S, D-H, D-H:M or D-H:M:S (e.g. 30:00, 2-00:00:00)"),
    ),
    "output": ("--output", _free_text),
    "error": ("--error", _free_text),
    "array": ("--array", _matcher(_ARRAY, "indexes such as 0-15, 1,3,5 or 0-99%10")),
    "dependency": ("--dependency", _matcher(_DEPENDENCY, "e.g. afterok:1234 or singleton")),
    "comment": ("--comment", _free_text),
}

#: Options a site or partition may give a default for.
DEFAULTABLE = ("nodes", "ntasks_per_node", "cpus_per_task", "gpus_per_node", "mem", "time")


def validate(fieldname: str, value: str) -> None:
    flag = fieldname.replace("_", "-")
    check_directive_value(f"--{flag}", value)
    OPTIONS[fieldname][1](flag, value)


def validate_defaults(values: Mapping[str, str]) -> None:
    for k, v in values.items():
        if k not in DEFAULTABLE:
            raise ConfigError(f"unknown default {k!r}; expected one of {', '.join(DEFAULTABLE)}")
        try:
            validate(k, v)
        except ValidationError as exc:
            raise ConfigError(f"default {k} = {v!r} is invalid ({exc})") from None


class Resources(Value):
    """The Slurm side of a job: validated option values, None where unset."""

    job_name: str | None = None
    account: str | None = None
    partition: str | None = None
    nodes: str | None = None
    ntasks_per_node: str | None = None
    cpus_per_task: str | None = None
    gpus_per_node: str | None = None
    mem: str | None = None
    time: str | None = None
    output: str | None = None
    error: str | None = None
    array: str | None = None
    dependency: str | None = None
    comment: str | None = None
    extra: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in fields(self):
            if name == "extra":
                continue
            value = getattr(self, name)
            if value is not None:
                validate(name, value)
        for arg in self.extra:
            check_directive_value("--sbatch-arg", arg)
        self.extra_options()  # each one sbatch option, or ValidationError

    def extra_options(self) -> list[tuple[str, str | None]]:
        """The ``--sbatch-arg`` options as sbatch reads them: full names, one per pair."""
        from slurmc.grammar.sbatch_options import parse

        return [pair for arg in self.extra for pair in parse(arg)]

    def split_comment(self) -> tuple[str | None, tuple[str, ...]]:
        """The job's own comment (``--comment``, then any ``--sbatch-arg`` spelling of it,
        the last winning as in sbatch) and the other ``--sbatch-arg`` options, in full."""
        comment = self.comment
        rest = []
        for flag, value in self.extra_options():
            if flag == "--comment":
                comment = value
            else:
                rest.append(flag if value is None else f"{flag}={value}")
        return comment, tuple(rest)

    def asks(self, option: str) -> bool:
        """Whether the ``--sbatch-arg`` options hold *option* (e.g. ``--exclusive``),
        however it was spelled (``--excl=...`` is ambiguous, ``--exclusiv`` is not)."""
        return any(flag == option for flag, _ in self.extra_options())

    def options(self) -> list[tuple[str, str | None]]:
        """``(--option, value)`` pairs, in a stable order; pass-through options last."""
        out: list[tuple[str, str | None]] = []
        for name, (flag, _) in OPTIONS.items():
            value = getattr(self, name)
            if value is not None:
                out.append((flag, value))
        out.extend(self.extra_options())
        return out

    def argv(self) -> list[str]:
        """The same options as command-line arguments (for salloc)."""
        return [flag if value is None else f"{flag}={value}" for flag, value in self.options()]


def with_defaults(
    given: Mapping[str, str | None], *layers: Mapping[str, str]
) -> dict[str, str | None]:
    """Fill unset options from default layers (first layer wins)."""
    out = dict(given)
    for layer in layers:
        for k, v in layer.items():
            if out.get(k) is None:
                out[k] = v
    return out
