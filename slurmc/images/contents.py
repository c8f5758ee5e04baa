"""What an image holds: OS, Python interpreters, conda environments, pip packages.

Works over any :class:`FileTree`, the two-call contract every image reader
implements (SquashFS through squashfs-tools, OCI layers, a directory, a dict in
tests): :meth:`FileTree.find` lists the files and symlinks matching glob patterns,
:meth:`FileTree.read` returns the bytes of some of them. :func:`discover` makes one
``find`` with every pattern it needs and one ``read`` of the small metadata files
it found (plus one more of each for symlinked ``os-release`` files), so a reader
pays for the metadata, never for the image's size.

Patterns are ``/``-separated, matched a component at a time with shell globbing
(``*`` never crosses ``/``, and a leading ``*`` or ``?`` does not match a leading
dot), as squashfs-tools matches its extract patterns.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"


@dataclass(frozen=True)
class Entry:
    """One file-system entry; *path* is relative to the image root (no leading ``/``)."""

    path: str
    kind: str
    size: int = 0
    target: str | None = None  # for symlinks


class FileTree(Protocol):
    def find(self, patterns: Sequence[str]) -> list[Entry]:
        """Non-directory entries whose whole path matches one of *patterns*."""
        ...

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        """Contents of the regular files among *paths*; the others are left out."""
        ...


# ------------------------------------------------------------------ pattern matching


def component_match(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def path_match(path: str, pattern: str) -> bool:
    parts, pats = path.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(map(component_match, parts, pats))


def _glob_rx(comp: str) -> str:
    out, i = [], 0
    while i < len(comp):
        c = comp[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif (
            c == "[" and (j := comp.find("]", i + 2 if comp[i + 1 : i + 2] in "!^" else i + 1)) > i
        ):
            body = comp[i + 1 : j]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    lead = "" if comp.startswith(".") else r"(?!\.)"
    return lead + "".join(out)


def compile_patterns(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regular expression matching a path when it matches any of *patterns*."""
    alts = ["/".join(_glob_rx(c) for c in p.strip("/").split("/")) for p in patterns]
    return re.compile("(?:" + "|".join(f"(?:{a})" for a in alts) + r")\Z" if alts else r"(?!)")


def walk(listdir: Callable[[str], Iterable[Entry] | None], patterns: Sequence[str]) -> list[Entry]:
    """Find the entries matching *patterns*, listing only directories a pattern can reach.

    *listdir(path)* gives the entries of directory *path* ("" is the root), or None
    when it is not a directory.
    """
    found: dict[str, Entry] = {}

    def descend(directory: str, pats: list[list[str]]) -> None:
        entries = listdir(directory)
        if entries is None:
            return
        for entry in entries:
            name = entry.path.rsplit("/", 1)[-1]
            deeper = [p[1:] for p in pats if component_match(name, p[0])]
            if not deeper:
                continue
            if any(not rest for rest in deeper) and entry.kind != DIR:
                found[entry.path] = entry
            rest = [r for r in deeper if r]
            if rest and entry.kind == DIR:
                descend(entry.path, rest)

    descend("", [p.strip("/").split("/") for p in patterns])
    return sorted(found.values(), key=lambda e: e.path)


class MemoryTree:
    """A file tree held in a dict: ``{path: bytes}`` for files, ``{path: Link(target)}``."""

    def __init__(self, files: Mapping[str, bytes | Link]) -> None:
        self.files = {p.strip("/"): v for p, v in files.items()}
        self.dirs: dict[str, set[str]] = {"": set()}
        for path in self.files:
            parts = path.split("/")
            for i in range(1, len(parts) + 1):
                parent, child = "/".join(parts[: i - 1]), "/".join(parts[:i])
                self.dirs.setdefault(parent, set()).add(child)
                if i < len(parts):
                    self.dirs.setdefault(child, set())

    def _entry(self, path: str) -> Entry:
        if path in self.dirs and path not in self.files:
            return Entry(path, DIR)
        value = self.files[path]
        if isinstance(value, Link):
            return Entry(path, SYMLINK, len(value.target), value.target)
        return Entry(path, FILE, len(value))

    def listdir(self, path: str) -> list[Entry] | None:
        if path not in self.dirs:
            return None
        return [self._entry(p) for p in sorted(self.dirs[path])]

    def find(self, patterns: Sequence[str]) -> list[Entry]:
        return walk(self.listdir, patterns)

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        return {p: v for p in paths if isinstance(v := self.files.get(p), bytes)}


@dataclass(frozen=True)
class Link:
    target: str


class DirectoryTree:
    """A root file system unpacked in a directory (a sandbox, a Charliecloud image dir).

    Symlinks are reported, never followed, so nothing outside the root is read.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def listdir(self, path: str) -> list[Entry] | None:
        try:
            it = os.scandir(os.path.join(self.root, path) if path else self.root)
        except OSError:
            return None
        out = []
        with it:
            for d in it:
                rel = f"{path}/{d.name}" if path else d.name
                try:
                    if d.is_symlink():
                        out.append(Entry(rel, SYMLINK, 0, os.readlink(d.path)))
                    elif d.is_dir(follow_symlinks=False):
                        out.append(Entry(rel, DIR))
                    elif d.is_file(follow_symlinks=False):
                        out.append(Entry(rel, FILE, d.stat(follow_symlinks=False).st_size))
                    else:
                        out.append(Entry(rel, OTHER))
                except OSError:
                    continue
        return out

    def find(self, patterns: Sequence[str]) -> list[Entry]:
        return walk(self.listdir, patterns)

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        out = {}
        for p in paths:
            full = os.path.join(self.root, p)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            try:
                with open(full, "rb") as fh:
                    out[p] = fh.read(MAX_READ)
            except OSError:
                continue
        return out


# ------------------------------------------------------------------ what to look for

#: where Python prefixes (conda roots and environments, venvs, the system) live
PREFIXES = (
    "usr",
    "usr/local",
    "opt/*",
    "opt/*/envs/*",
    "usr/local/*",
    "usr/local/*/envs/*",
    "root/*",
    "root/*/envs/*",
)
_LIBDIRS = (
    "lib/python3*/site-packages",
    "lib/python3*/dist-packages",
    "lib64/python3*/site-packages",
)
_PER_PREFIX = (
    "bin/python3*",
    "bin/conda",
    "conda-meta/*.json",
    "conda-meta/history",
    "pyvenv.cfg",
    *(
        f"{lib}/{rest}"
        for lib in _LIBDIRS
        for rest in (
            "*.dist-info/METADATA",
            "*.dist-info/INSTALLER",
            "*.egg-info",
            "*.egg-info/PKG-INFO",
        )
    ),
)
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
METADATA_FILES = (
    ".singularity.d/env/*",
    ".singularity.d/runscript",
    ".singularity.d/labels.json",
    ".singularity.d/Singularity",
    "ch/environment",
    "ch/metadata.json",
)
PATTERNS = (
    *OS_RELEASE,
    *METADATA_FILES,
    *(f"{prefix}/{rest}" for prefix in PREFIXES for rest in _PER_PREFIX),
)
_PYTHON = re.compile(r"python3(\.\d+)?\Z")
_SITE = re.compile(r"(.*)/lib(?:64)?/python3[^/]*/(?:site|dist)-packages/([^/]+)(?:/([^/]+))?\Z")
_WITH_CONDA_SH = re.compile(r"^\s*(?:export\s+)?WITH_CONDA=(.*)$")
#: largest metadata file read (a conda-meta record of a big package is a few MB)
MAX_READ = 64 << 20


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


# ------------------------------------------------------------------ discovery


def _resolve_link(path: str, target: str) -> str:
    base = "" if target.startswith("/") else posixpath.dirname(path)
    return posixpath.normpath(posixpath.join("/", base, target)).lstrip("/")


def _read_following_links(
    tree: FileTree, entries: dict[str, Entry], paths: Sequence[str], hops: int = 8
) -> dict[str, bytes]:
    """Read *paths*, following symlinks (inside the image) for those that are links."""
    out = tree.read([p for p in paths if entries[p].kind == FILE and entries[p].size <= MAX_READ])
    pending = {p: p for p in paths if entries[p].kind == SYMLINK}
    while pending and hops > 0:
        hops -= 1
        targets = {
            orig: _resolve_link(cur, entries[cur].target or "") for orig, cur in pending.items()
        }
        found = {e.path: e for e in tree.find(sorted(set(targets.values())))}
        entries.update(found)
        data = tree.read(
            [t for t in set(targets.values()) if found.get(t, Entry(t, OTHER)).kind == FILE]
        )
        pending = {}
        for orig, t in targets.items():
            if t in data:
                out[orig] = data[t]
            elif t in found and found[t].kind == SYMLINK:
                pending[orig] = t
    return out


def discover(tree: FileTree, extra_env: Mapping[str, str] | None = None) -> Contents:
    """Find what the image holds. *extra_env* is environment the image format itself
    declares (an OCI config's Env), consulted for WITH_CONDA after the image's files."""
    entries = {e.path: e for e in tree.find(PATTERNS)}
    wanted = [
        p
        for p, e in entries.items()
        if e.kind in (FILE, SYMLINK)
        and not _PYTHON.match(p.rsplit("/", 1)[-1])
        and not p.endswith(("/bin/conda", ".singularity.d/runscript"))
        and not (e.kind == SYMLINK and "-packages/" in p)
    ]
    data = _read_following_links(tree, entries, wanted)
    contents = Contents()
    contents.env_files = sorted(
        p for p in entries if p == "ch/environment" or p.startswith(".singularity.d/env/")
    )

    for path in OS_RELEASE:  # /etc/os-release first; it is often a link to the other
        if path in data:
            contents.os_release = parse_os_release(data[path].decode("utf-8", "replace"))
            break

    envs: dict[str, Environment] = {}

    def env_for(prefix: str) -> Environment:
        if prefix not in envs:
            envs[prefix] = Environment(prefix="/" + prefix, kind="system", name="/" + prefix)
        return envs[prefix]

    # conda environments: a prefix with conda-meta/
    for path in sorted(entries):
        if "/conda-meta/" in path:
            prefix = path.split("/conda-meta/", 1)[0]
            env = env_for(prefix)
            env.kind = "conda"
            _, sep, name = prefix.rpartition("/envs/")
            env.name = name if sep else "base"
            if path.endswith(".json") and path in data:
                pkg = parse_conda_record(data[path], "/" + path)
                if pkg is None:
                    contents.warnings.append(f"/{path}: not a conda package record; ignored")
                else:
                    env.conda_packages.append(pkg)
        elif path.endswith("/pyvenv.cfg"):
            env = env_for(path[: -len("/pyvenv.cfg")])
            if env.kind == "system":
                env.kind = "venv"
                env.name = "/" + env.prefix.lstrip("/")

    # Python interpreters
    for path, e in sorted(entries.items()):
        name = path.rsplit("/", 1)[-1]
        if "/bin/" in path and (m := _PYTHON.match(name)):
            version = "3" + m.group(1) if m.group(1) else None
            if version is None and e.target and (t := re.search(r"python(3\.\d+)", e.target)):
                version = t.group(1)
            contents.pythons.append(Python("/" + path, version, e.target))
            env_for(path.rsplit("/bin/", 1)[0]).pythons.append("/" + path)

    # pip-installed distributions, per site-packages
    for path in sorted(entries):
        m = _SITE.match(path)
        if not m:
            continue
        prefix, dist, inner = m.groups()
        site = posixpath.dirname(path if inner is None else posixpath.dirname(path))
        if dist.endswith(".dist-info") and inner == "METADATA":
            meta = data.get(path)
        elif dist.endswith(".egg-info") and inner in (None, "PKG-INFO"):
            if inner is None and entries[path].kind != FILE:
                continue
            meta = data.get(path)
        else:
            continue
        headers = parse_metadata_headers(meta.decode("utf-8", "replace")) if meta else {}
        fallback = _name_version_from_dir(dist)
        installer = data.get(f"{site}/{dist}/INSTALLER", b"")
        env_for(prefix).pip_packages.append(
            Package(
                name=headers.get("name") or fallback[0],
                version=headers.get("version") or fallback[1],
                manager="pip",
                installer=installer.decode("utf-8", "replace").strip(),
                location="/" + site,
            )
        )

    # WITH_CONDA: Apptainer/Singularity env scripts, then Charliecloud, then the format's own
    for path in sorted(p for p in data if p.startswith(".singularity.d/env/")):
        value = parse_with_conda_sh(data[path].decode("utf-8", "replace"))
        if value is not None:
            contents.with_conda, contents.with_conda_source = value, "/" + path
    if contents.with_conda is None and "ch/environment" in data:
        ch_env = parse_env_file(data["ch/environment"].decode("utf-8", "replace"))
        if "WITH_CONDA" in ch_env:
            contents.with_conda, contents.with_conda_source = (
                ch_env["WITH_CONDA"],
                "/ch/environment",
            )
    if contents.with_conda is None and extra_env and "WITH_CONDA" in extra_env:
        contents.with_conda, contents.with_conda_source = (
            extra_env["WITH_CONDA"],
            "image config Env",
        )
    if contents.with_conda:
        target = activated_env(contents.with_conda)
        for env in envs.values():
            if env.kind == "conda" and target in (env.name, env.prefix):
                env.activated_by_with_conda = True

    # Singularity metadata inside the file system
    sing: dict[str, Any] = {}
    env_scripts = sorted("/" + p for p in entries if p.startswith(".singularity.d/env/"))
    if env_scripts:
        sing["env_scripts"] = env_scripts
    if ".singularity.d/runscript" in entries:
        sing["runscript"] = "/.singularity.d/runscript"
    if ".singularity.d/Singularity" in entries:
        sing["definition"] = "/.singularity.d/Singularity"
    if ".singularity.d/labels.json" in data:
        try:
            sing["labels"] = json.loads(data[".singularity.d/labels.json"])
        except (ValueError, RecursionError):
            contents.warnings.append("/.singularity.d/labels.json is not valid JSON")
    contents.singularity = sing

    for env in envs.values():
        env.conda_packages.sort(key=lambda p: p.key)
        env.pip_packages.sort(key=lambda p: (p.key, p.location))
    order = {"conda": 0, "venv": 1, "system": 2}
    contents.environments = sorted(envs.values(), key=lambda e: (order[e.kind], e.prefix))
    return contents
