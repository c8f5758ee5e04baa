"""What an image's metadata files say, and what slurmc reports from them.

The result types (:class:`Contents` and its parts) and the pure parsers of the files
:func:`slurmc.images.contents.discover` reads: ``os-release``, ``METADATA``/``PKG-INFO``,
conda-meta records, LUMI's ``$WITH_CONDA`` definitions, environment files.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

_WITH_CONDA_SH = re.compile(r"^\s*(?:export\s+)?WITH_CONDA=(.*)$")


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    manager: str  # "conda" | "pip"
    build: str = ""
    channel: str = ""
    installer: str = ""
    location: str = ""

    @property
    def key(self) -> str:
        return canonical_name(self.name)

    def to_dict(self) -> dict[str, str]:
        out = {"name": self.name, "version": self.version}
        if self.manager == "conda":
            out.update(build=self.build, channel=self.channel)
        else:
            out.update(installer=self.installer, location=self.location)
        return out


@dataclass
class Environment:
    prefix: str  # absolute, e.g. /opt/miniconda3/envs/pytorch
    kind: str  # "conda" | "venv" | "system"
    name: str
    pythons: list[str] = field(default_factory=list)
    conda_packages: list[Package] = field(default_factory=list)
    pip_packages: list[Package] = field(default_factory=list)
    activated_by_with_conda: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "kind": self.kind,
            "name": self.name,
            "pythons": self.pythons,
            "activated_by_with_conda": self.activated_by_with_conda,
            "conda_packages": [p.to_dict() for p in self.conda_packages],
            "pip_packages": [p.to_dict() for p in self.pip_packages],
        }


@dataclass(frozen=True)
class Python:
    path: str
    version: str | None
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "version": self.version, "target": self.target}


@dataclass
class Contents:
    os_release: dict[str, str] = field(default_factory=dict)
    pythons: list[Python] = field(default_factory=list)
    environments: list[Environment] = field(default_factory=list)
    with_conda: str | None = None
    with_conda_source: str | None = None
    singularity: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the runtimes' environment files the image holds (ch/environment, .singularity.d/env/*)
    env_files: list[str] = field(default_factory=list)

    @property
    def os_name(self) -> str:
        r = self.os_release
        return r.get("PRETTY_NAME") or " ".join(
            x for x in (r.get("NAME"), r.get("VERSION_ID")) if x
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "os": {"name": self.os_name, **self.os_release} if self.os_release else None,
            "pythons": [p.to_dict() for p in self.pythons],
            "with_conda": (
                {"value": self.with_conda, "source": self.with_conda_source}
                if self.with_conda is not None
                else None
            ),
            "environments": [e.to_dict() for e in self.environments],
            "singularity": self.singularity or None,
            "warnings": self.warnings,
        }


# ------------------------------------------------------------------ parsers (pure)


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("'\"")]
        out[key.strip()] = " ".join(words)
    return out


def parse_metadata_headers(text: str) -> dict[str, str]:
    """The header block of a METADATA / PKG-INFO file (RFC 822 style; stops at the body)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        if line[:1] in (" ", "\t") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def _name_version_from_dir(dirname: str) -> tuple[str, str]:
    stem = re.sub(r"\.(dist|egg)-info\Z", "", dirname)
    name, _, version = stem.partition("-")
    return name, version.split("-py")[0]


def parse_conda_record(data: bytes, where: str) -> Package | None:
    try:
        rec = json.loads(data)
    except (ValueError, RecursionError):  # crafted: bad, or nested too deeply
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("name"), str):
        return None
    channel = str(rec.get("channel") or "")
    # https://conda.anaconda.org/conda-forge/linux-64 -> conda-forge; .../pkgs/main -> pkgs/main
    channel = re.sub(r"/(noarch|[a-z]+-(64|32|aarch64|ppc64le|s390x|armv7l|arm64))\Z", "", channel)
    channel = re.sub(r"\Ahttps?://(conda\.anaconda\.org|repo\.anaconda\.com)/", "", channel)
    return Package(
        name=rec["name"],
        version=str(rec.get("version", "")),
        manager="conda",
        build=str(rec.get("build") or rec.get("build_string") or ""),
        channel=channel,
        location=where,
    )


def parse_with_conda_sh(text: str) -> str | None:
    """The value a shell script gives WITH_CONDA (last assignment wins)."""
    value = None
    for line in text.splitlines():
        m = _WITH_CONDA_SH.match(line)
        if not m:
            continue
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError:
            continue
        value = " ".join(words)
    return value


def parse_env_file(text: str) -> dict[str, str]:
    """Charliecloud's /ch/environment: ``NAME=value`` lines, optional surrounding quotes."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        k, _, v = line.partition("=")
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


def activated_env(with_conda: str) -> str | None:
    """``source /opt/miniconda3/bin/activate pytorch`` -> ``pytorch``; ``conda activate X`` -> X."""
    try:
        words = shlex.split(with_conda)
    except ValueError:
        return None
    for i, w in enumerate(words):
        if w.endswith("/activate") or w == "activate":
            rest = [x for x in words[i + 1 :] if not x.startswith("-")]
            return rest[0] if rest and rest[0] not in ("&&", ";") else "base"
    return None
