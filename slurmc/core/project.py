"""A project's own defaults for ``slurmc run`` and ``slurmc shell``.

Looked up from the working directory upwards: in each directory a ``slurmc.toml``,
else a ``pyproject.toml`` with a ``[tool.slurmc]`` table; the nearest one found is
used (a ``pyproject.toml`` without the table does not stop the search). Keys are
named as ``slurmc run``'s long options::

    # slurmc.toml
    site = "lumi"
    image = "/appl/local/containers/sif-images/lumi-pytorch-rocm-6.0.3.sif"
    partition = "small-g"
    gpus-per-node = 2
    time = "30:00"
    bind = ["/scratch/project_465000123"]
    env = { HF_HOME = "/scratch/project_465000123/hf" }

The command line wins over the file: a value given there replaces the file's (for the
lists ``bind``, ``sbatch-arg``, ``cache-dir`` and ``catalog`` too; ``env`` is merged
by name, the command line's value winning). An unknown key or a bad value is one line
naming the file and the key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slurmc.errors import ConfigError, ValidationError
from slurmc.values import Value, field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Keys that are resources (written as #SBATCH lines), by their option name.
RESOURCES = {
    "partition": "partition",
    "account": "account",
    "nodes": "nodes",
    "ntasks-per-node": "ntasks_per_node",
    "cpus-per-task": "cpus_per_task",
    "gpus-per-node": "gpus_per_node",
    "mem": "mem",
    "time": "time",
    "job-name": "job_name",
    "output": "output",
    "error": "error",
    "comment": "comment",
}
STRINGS = ("site", "image", "venv")
LISTS = ("bind", "sbatch-arg", "cache-dir", "catalog")
KEYS = (*STRINGS, *RESOURCES, *LISTS, "env", "conda")


class ProjectDefaults(Value):
    file: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.values.get(key)


def find(cwd: str) -> Path | None:
    """The nearest ``slurmc.toml``, or ``pyproject.toml`` with ``[tool.slurmc]``."""
    here = Path(cwd).resolve()
    for d in (here, *here.parents):
        candidate = d / "slurmc.toml"
        if candidate.is_file():
            return candidate
        pyproject = d / "pyproject.toml"
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({str(exc).splitlines()[0]})") from None


def _has_tool_table(path: Path) -> bool:
    try:
        data = _read(path)
    except ConfigError:
        return False  # someone else's broken pyproject.toml is not ours to judge
    tool = data.get("tool")
    return isinstance(tool, dict) and "slurmc" in tool


def load(path: Path) -> ProjectDefaults:
    """Read and check a project file (``slurmc.toml`` or ``[tool.slurmc]``)."""
    data = _read(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("slurmc", {})
        where = f"{path} [tool.slurmc]"
    else:
        where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of slurmc run options")
    values: dict[str, Any] = {}
    for key, value in data.items():
        values[key] = _check(where, key, value)
    return ProjectDefaults(str(path), values)


def _bad(where: str, key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{where}: key '{key}': got {value!r}, expected {expected}")


def _check(where: str, key: str, value: Any) -> Any:
    from slurmc.core.resources import validate

    if key not in KEYS:
        raise ConfigError(
            f"{where}: unknown key '{key}'; the keys are slurmc run's long options: "
            + ", ".join(KEYS)
        )
    if key in RESOURCES:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _bad(where, key, value, "a string or a whole number")
        text = str(value)
        try:
            validate(RESOURCES[key], text)
        except ValidationError as exc:
            raise ConfigError(f"{where}: key '{key}': {exc}") from None
        return text
    if key in STRINGS:
        if not isinstance(value, str) or not value or "\x00" in value:
            raise _bad(where, key, value, "a non-empty string")
        return value
    if key in LISTS:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _bad(where, key, value, "a list of non-empty strings")
        return tuple(value)
    if key == "env":
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
        ):
            raise _bad(where, key, value, 'a table of NAME = "value"')
        return tuple(f"{k}={v}" for k, v in value.items())
    if not isinstance(value, bool):  # conda
        raise _bad(where, key, value, "true or false")
    return value


def project_defaults(cwd: str, env: Mapping[str, str]) -> ProjectDefaults:
    """The project file for *cwd* (``SLURMC_PROJECT_FILE=none`` ignores any)."""
    choice = env.get("SLURMC_PROJECT_FILE")
    if choice == "none":
        return ProjectDefaults()
    path = Path(os.path.expanduser(choice)) if choice else find(cwd)
    if path is None:
        return ProjectDefaults()
    return load(path)
