"""Reading a TOML table with errors that name the file, the dotted key and what was
expected (``lumi.toml: key 'runtime.kind' is 'x'; expected one of ...``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slurmc.errors import ConfigError


class Table:
    """A TOML table that remembers its file and dotted key for error messages."""

    def __init__(self, data: Mapping[str, Any], file: str, prefix: str = "") -> None:
        self.data = data
        self.file = file
        self.prefix = prefix
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.prefix}{k}"

    def fail(self, k: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self.file}: key '{self.key(k)}': got {value!r}, expected {expected}")

    def get(self, k: str, kind: type | tuple[type, ...], expected: str, default: Any = None) -> Any:
        self.used.add(k)
        if k not in self.data:
            return default
        value = self.data[k]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(k, value, expected)
        items: list[Any] = (
            [value]
            if isinstance(value, str)
            else list(value.values())
            if isinstance(value, dict)
            else list(value)
            if isinstance(value, list)
            else []
        )
        if any(isinstance(v, str) and "\0" in v for v in items):  # no path or name holds one
            raise self.fail(k, value, f"{expected} without a NUL byte")
        return value

    def choice(self, k: str, choices: tuple[str, ...], default: str | None) -> Any:
        value = self.get(k, str, "one of " + ", ".join(choices), default)
        if value is not None and value not in choices:
            raise self.fail(k, value, "one of " + ", ".join(choices))
        return value

    def strings(self, k: str, expected: str = "a list of strings") -> tuple[str, ...]:
        value = self.get(k, list, expected, [])
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(k, value, expected)
        return tuple(value)

    def str_map(self, k: str, expected: str = "a table of strings") -> dict[str, str]:
        value = self.get(k, dict, expected, {})
        if not all(isinstance(v, str) for v in value.values()):
            raise self.fail(k, value, expected)
        return dict(value)

    def sub(self, k: str) -> Table:
        value = self.get(k, dict, "a table", {})
        return Table(value, self.file, f"{self.key(k)}.")

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.file}: unknown key '{self.key(unknown[0])}'; "
                "check its spelling against `slurmc site show devcluster`"
            )
