"""What an image holds: OS, Python interpreters, conda environments, pip packages.

Works over any :class:`~slurmc.images.tree.FileTree` (SquashFS, OCI layers, a
directory, a dict in tests): :func:`discover` makes one ``find`` with every pattern it
needs and one ``read`` of the small metadata files it found (plus one more of each for
symlinked ``os-release`` files), so a reader pays for the metadata, never for the
image's size.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from slurmc.images.metadata import (
    Contents,
    Environment,
    Package,
    Python,
    _name_version_from_dir,
    activated_env,
    parse_conda_record,
    parse_env_file,
    parse_metadata_headers,
    parse_os_release,
    parse_with_conda_sh,
)
from slurmc.images.tree import (
    FILE,
    MAX_READ,
    OTHER,
    SYMLINK,
    Entry,
    FileTree,
)

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
