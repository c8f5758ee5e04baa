"""``slurmc inspect``: what is inside an image, read from the image file itself.

Static inspection opens no container and submits no job: it recognises the
format (SIF, SquashFS, OCI archive/layout, docker-archive, directory), reads the
SIF header and descriptors, and hands the root file system to
:func:`slurmc.images.contents.discover`. ``--exec`` instead runs the LUMI recipe
(``$WITH_CONDA && pip list``) inside the container, locally through the site's
runtime or on a compute node through ``srun``; :func:`exec_argv` builds that
command and :func:`parse_exec_output` reads what it prints.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slurmc.errors import ImageNotFoundError, SlurmcError, ValidationError
from slurmc.images import ImageFormatError
from slurmc.images.contents import Contents, DirectoryTree, FileTree, Package, discover
from slurmc.runtimes import Runtime, available, get_runtime

FORMATS = ("sif", "squashfs", "oci-archive", "oci-layout", "docker-archive", "directory")


# ------------------------------------------------------------------ finding the file


@dataclass(frozen=True)
class Located:
    text: str  # what the user typed
    path: str
    site: Any = None  # the Site, when one was needed to find the image


def locate(
    image: str,
    site_flag: str | None,
    cache_dirs: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
) -> Located:
    """Resolve IMAGE as ``slurmc run`` does: a path, or a reference in the cache roots."""
    from slurmc.grammar.refs import parse_image

    spec = parse_image(image)
    if spec.kind == "uri":
        raise ImageNotFoundError(
            f"{image}: slurmc inspect reads image files; pull it first "
            f"(e.g. `singularity pull image.sif {image}`) and inspect the file"
        )
    if spec.kind == "path":
        assert spec.path is not None
        path = spec.path
        if path.startswith("~/"):
            path = env.get("HOME", os.path.expanduser("~")) + path[1:]
        path = os.path.normpath(os.path.join(cwd, path))
        if not os.path.exists(path):
            raise ImageNotFoundError(f"image file {path} does not exist; check the path")
        return Located(image, path)
    from slurmc.core.roots import site_roots
    from slurmc.core.sites import resolve_site
    from slurmc.usecases.resolve import resolve_image

    site = resolve_site(site_flag, env)
    roots = site_roots(site, env, tuple(cache_dirs))
    resolved = resolve_image(spec, get_runtime(site.runtime), roots, cwd=cwd, env=env)
    if resolved.source == "missing":
        raise ImageNotFoundError(
            f"image {image} is not in the cache (it would be {resolved.path}); "
            "pull it first, or give a local image file"
        )
    return Located(image, resolved.path, site)


def detect_format(path: str) -> str:
    """Which kind of image *path* is, from its first bytes (or its directory listing)."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "oci-layout")) and os.path.isfile(
            os.path.join(path, "index.json")
        ):
            return "oci-layout"
        return "directory"
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise ImageFormatError(f"{path}: cannot read: {exc.strerror}") from None
    if head[32:41] == b"SIF_MAGIC":
        return "sif"
    if head[:4] == b"hsqs":
        return "squashfs"
    if len(head) >= 262 and head[257:262] == b"ustar":
        import tarfile

        try:
            with tarfile.open(path, "r:") as tf:
                names = {m.name.lstrip("./") for m in tf.getmembers()[:64]}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageFormatError(f"{path}: damaged or truncated tar archive ({exc})") from None
        if "index.json" in names or "oci-layout" in names:
            return "oci-archive"
        if "manifest.json" in names:
            return "docker-archive"
        raise ImageFormatError(f"{path}: a tar archive, but neither an OCI nor a docker archive")
    if not head:
        raise ImageFormatError(f"{path}: empty file, not an image")
    raise ImageFormatError(
        f"{path}: not an image slurmc can read (SIF, SquashFS, OCI/docker archive, directory)"
    )


# ------------------------------------------------------------------ static inspection


@dataclass
class Inspection:
    image: str
    path: str
    format: str
    size: int
    contents: Contents
    sif: dict[str, Any] | None = None
    squashfs: dict[str, Any] | None = None
    oci: dict[str, Any] | None = None

    def packages(self) -> dict[tuple[str, str, str], Package]:
        """Every package keyed by (environment prefix, manager, normalised name)."""
        out: dict[tuple[str, str, str], Package] = {}
        for env in self.contents.environments:
            for pkg in (*env.conda_packages, *env.pip_packages):
                out.setdefault((env.prefix, pkg.manager, pkg.key), pkg)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "sif": self.sif,
            "squashfs": self.squashfs,
            "oci": self.oci,
            **self.contents.to_dict(),
        }


def _size(path: str) -> int:
    if os.path.isdir(path):
        return 0
    return os.path.getsize(path)


def _sif_part(path: str) -> tuple[dict[str, Any], FileTree | None, dict[str, Any] | None]:
    from slurmc.images import sif
    from slurmc.images.squashfs import SquashfsTree

    image = sif.read_sif(path)
    info = image.to_dict()
    info["labels"] = sif.read_labels(path, image)
    info["signatures"] = [
        {
            "id": d.id,
            "signs": (f"group {d.linked_id}" if d.link_is_group else f"object {d.linked_id}"),
            "hash_type": d.extra.get("hash_type"),
            "fingerprint": d.extra.get("fingerprint"),
        }
        for d in image.of_type(sif.SIGNATURE)
    ]
    info["metadata_objects"] = [
        {"id": d.id, "data_type": d.data_type, "name": d.name, "size": d.size}
        for d in image.descriptors
        if d.data_type_code in sif.METADATA_TYPES
    ]
    prim = image.primary_partition
    if prim is None:
        kind = "an OCI-SIF image" if image.of_type(sif.OCI_ROOT_INDEX) else "no primary partition"
        info["note"] = f"{kind}: no root file system to read"
        return info, None, None
    fs_type = prim.extra.get("fs_type")
    if prim.extra.get("fs_type_code") != sif.FS_SQUASHFS:
        info["note"] = f"primary partition is {fs_type}, not SquashFS: file system not read"
        return info, None, None
    try:
        tree = SquashfsTree(path, prim.offset, prim.size)
    except ImageFormatError as exc:  # the SIF itself is sound: report it, say why no files
        info["note"] = f"primary partition not read: {exc}"
        return info, None, None
    sq = {"offset": prim.offset, **tree.superblock.to_dict()}
    return info, tree, sq


def inspect_image(path: str, given: str | None = None) -> Inspection:
    """Read *path* statically: no container, no job."""
    fmt = detect_format(path)
    sif_info = sq_info = oci_info = None
    tree: FileTree | None
    extra_env: dict[str, str] = {}
    oci_image = None
    if fmt == "sif":
        sif_info, tree, sq_info = _sif_part(path)
    elif fmt == "squashfs":
        from slurmc.images.squashfs import SquashfsTree

        sq_tree = SquashfsTree(path)
        tree, sq_info = sq_tree, {"offset": 0, **sq_tree.superblock.to_dict()}
    elif fmt in ("oci-archive", "oci-layout", "docker-archive"):
        from slurmc.images.oci import open_oci

        oci_image = open_oci(path)
        oci_info, extra_env, tree = oci_image.to_dict(), oci_image.env, oci_image.tree()
    else:
        tree = DirectoryTree(path)
    try:
        contents = discover(tree, extra_env) if tree is not None else Contents()
    finally:
        if oci_image is not None:
            oci_image.close()
    return Inspection(
        image=given or path,
        path=path,
        format=fmt,
        size=_size(path),
        contents=contents,
        sif=sif_info,
        squashfs=sq_info,
        oci=oci_info,
    )


# ------------------------------------------------------------------ diff


@dataclass
class Change:
    environment: str
    manager: str
    name: str
    old: str | None
    new: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "manager": self.manager,
            "name": self.name,
            "old": self.old,
            "new": self.new,
        }


@dataclass
class Diff:
    a: str
    b: str
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    os: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "os": {"a": self.os[0], "b": self.os[1]} if self.os else None,
            "added": [c.to_dict() for c in self.added],
            "removed": [c.to_dict() for c in self.removed],
            "changed": [c.to_dict() for c in self.changed],
        }


def _label(pkg: Package) -> str:
    return f"{pkg.version} ({pkg.build})" if pkg.manager == "conda" and pkg.build else pkg.version


def diff(a: Inspection, b: Inspection) -> Diff:
    """Packages added, removed and changed from *a* to *b*, per environment and manager."""
    pa, pb = a.packages(), b.packages()
    out = Diff(a.image, b.image)
    if a.contents.os_name != b.contents.os_name:
        out.os = (a.contents.os_name, b.contents.os_name)
    for key in sorted(pa.keys() | pb.keys()):
        env, manager, _ = key
        old, new = pa.get(key), pb.get(key)
        name = (new or old).name  # type: ignore[union-attr]
        if old is None:
            out.added.append(Change(env, manager, name, None, _label(new)))  # type: ignore[arg-type]
        elif new is None:
            out.removed.append(Change(env, manager, name, _label(old), None))
        elif _label(old) != _label(new):
            out.changed.append(Change(env, manager, name, _label(old), _label(new)))
    return out


# ------------------------------------------------------------------ --exec

MARK = "@@slurmc-inspect@@"
#: runs inside the container: activate like LUMI's recipe, then list packages
EXEC_SCRIPT = f"""\
if [ -n "${{WITH_CONDA:-}}" ]; then
    $WITH_CONDA || {{ echo "slurmc: \\$WITH_CONDA failed inside the container" >&2; exit 97; }}
fi
echo "{MARK} env"
echo "${{CONDA_DEFAULT_ENV:-}}"
echo "${{CONDA_PREFIX:-}}"
py=$(command -v python3 || command -v python || true)
nocheck=--disable-pip-version-check
if command -v pip >/dev/null 2>&1 && out=$(pip list --format=json $nocheck 2>/dev/null); then
    echo "{MARK} pip pip"; echo "$out"
elif [ -n "$py" ] && out=$("$py" -m pip list --format=json $nocheck 2>/dev/null); then
    echo "{MARK} pip python-m-pip"; echo "$out"
elif [ -n "$py" ]; then
    echo "{MARK} pip importlib.metadata"; "$py" -c "$1"
else
    echo "{MARK} pip none"; echo null
fi
if command -v conda >/dev/null 2>&1 && out=$(conda list --json 2>/dev/null); then
    echo "{MARK} conda conda"; echo "$out"
else
    echo "{MARK} conda none"; echo null
fi
"""
#: pip's list, for images without pip: one entry per name, first on sys.path wins
PY_LIST = (
    "import importlib.metadata as m, json\n"
    "seen = {}\n"
    "for d in m.distributions():\n"
    "    n = d.metadata['Name']\n"
    "    if n and n.lower() not in seen:\n"
    "        seen[n.lower()] = {'name': n, 'version': d.version}\n"
    "print(json.dumps(sorted(seen.values(), key=lambda x: x['name'].lower())))\n"
)


@dataclass
class ExecListing:
    image: str
    argv: list[str]
    conda_env: str
    conda_prefix: str
    pip_method: str
    pip: list[Package]
    conda: list[Package] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "argv": self.argv,
            "conda_env": self.conda_env or None,
            "conda_prefix": self.conda_prefix or None,
            "pip_method": self.pip_method,
            "pip_packages": [{"name": p.name, "version": p.version} for p in self.pip],
            "conda_packages": (None if self.conda is None else [p.to_dict() for p in self.conda]),
        }


def container_command() -> list[str]:
    return ["bash", "-c", EXEC_SCRIPT, "slurmc-inspect", PY_LIST]


def _runtime(name: str) -> Runtime | None:
    try:
        return get_runtime(name)
    except KeyError:
        return None


def exec_argv(runtime: str, executable: str, path: str, fmt: str) -> list[str]:
    """The local command that runs :data:`EXEC_SCRIPT` in the image with *runtime*."""
    rt = _runtime(runtime)
    if rt is None or not rt.local_exec:
        raise ValidationError(
            f"--exec with runtime {runtime} works only on a node: add --on-node "
            "(it runs srun --container-image)"
        )
    return rt.exec_argv(executable, path, container_command(), fmt=fmt)


def srun_argv(
    runtime: str, executable: str, path: str, fmt: str, options: Sequence[str]
) -> list[str]:
    """``srun`` on one compute node around the runtime's command (Pyxis for Enroot)."""
    rt = _runtime(runtime)
    if rt is None:
        raise ValidationError(f"--exec: no runtime {runtime}")
    return rt.srun_argv(executable, path, container_command(), (), options, fmt=fmt)


def _json_list(text: str, what: str) -> list[dict[str, Any]] | None:
    text = text.strip()
    if not text or text == "null":
        return None
    start = text.find("[")
    try:
        value = json.loads(text[start:] if start >= 0 else text)
    except (ValueError, RecursionError):
        raise ImageFormatError(f"--exec: the container's {what} output is not JSON") from None
    if not isinstance(value, list):
        raise ImageFormatError(f"--exec: the container's {what} output is not a JSON list")
    return [v for v in value if isinstance(v, dict)]


def parse_exec_output(stdout: str, image: str, argv: Sequence[str]) -> ExecListing:
    sections: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            words = line[len(MARK) + 1 :].split()
            current = words[0]
            sections[current] = (words[1] if len(words) > 1 else "", [])
        elif current is not None:
            sections[current][1].append(line)
    if "env" not in sections or "pip" not in sections:
        raise ImageFormatError(
            "--exec: the container did not print the package listing; does the image have bash?"
        )
    env_lines = [*sections["env"][1], "", ""]
    pip_method, pip_lines = sections["pip"]
    pip = [
        Package(str(d.get("name", "")), str(d.get("version", "")), "pip")
        for d in _json_list("\n".join(pip_lines), "pip list") or []
    ]
    conda_raw = _json_list("\n".join(sections.get("conda", ("", []))[1]), "conda list")
    conda = (
        None
        if conda_raw is None
        else [
            Package(
                str(d.get("name", "")),
                str(d.get("version", "")),
                "conda",
                build=str(d.get("build_string", "")),
                channel=str(d.get("channel", "")),
            )
            for d in conda_raw
        ]
    )
    return ExecListing(
        image=image,
        argv=list(argv),
        conda_env=env_lines[0],
        conda_prefix=env_lines[1],
        pip_method=pip_method,
        pip=sorted(pip, key=lambda p: p.key),
        conda=None if conda is None else sorted(conda, key=lambda p: p.key),
    )


def runtime_for_format(fmt: str, what: str = "--exec") -> tuple[str, str]:
    """Without a site: the runtime on PATH that runs an image of format *fmt*."""
    for kind in available():
        rt = get_runtime(kind)
        if fmt in rt.local_formats and shutil.which(rt.executable):
            return kind, rt.executable
    raise ValidationError(
        f"{what}: no site given and no runtime found on PATH for a {fmt} image; pass --site"
    )


def with_conda_of(path: str) -> tuple[bool, str | None]:
    """Whether the image file could be read, and the $WITH_CONDA it defines (or None)."""
    try:
        return True, inspect_image(path).contents.with_conda
    except (SlurmcError, ImageFormatError, OSError):
        return False, None


def run_exec(
    located: Located,
    site_flag: str | None,
    env: Mapping[str, str],
    *,
    on_node: bool = False,
    srun_options: Sequence[str] = (),
    timeout: float | None = None,
) -> ExecListing:
    """Run the package listing inside the container and parse what it prints."""
    from slurmc import proc
    from slurmc.core.sites import resolve_site
    from slurmc.errors import ConfigError

    fmt = detect_format(located.path)
    site = located.site
    if site is None:
        try:
            site = resolve_site(site_flag, env)
        except ConfigError:
            if site_flag:
                raise
            site = None
    runtime, executable = (site.runtime, site.executable) if site else runtime_for_format(fmt)
    if on_node:
        argv = srun_argv(runtime, executable, located.path, fmt, srun_options)
    else:
        argv = exec_argv(runtime, executable, located.path, fmt)
    run_env = dict(env)
    run_env.setdefault("USER", run_env.get("LOGNAME") or "slurmc")  # ch-run insists on $USER
    result = proc.run(argv, env=run_env, timeout=timeout)
    return parse_exec_output(result.stdout, located.text, argv)


def compare_exec(static: Inspection, listing: ExecListing) -> dict[str, Any]:
    """The static pip packages of the environment --exec ran in, against its pip list."""
    prefix = listing.conda_prefix
    envs = static.contents.environments
    env = next((e for e in envs if prefix and e.prefix == prefix), None)
    if env is None:
        env = next((e for e in envs if e.kind == "system"), None)
    static_pip = {p.key: p.version for p in env.pip_packages} if env else {}
    if env and env.kind == "conda":  # the system's site-packages are on sys.path as well
        for e in envs:
            if e.kind == "system":
                for p in e.pip_packages:
                    static_pip.setdefault(p.key, p.version)
    exec_pip = {p.key: p.version for p in listing.pip}
    return {
        "environment": env.prefix if env else None,
        "only_static": sorted(set(static_pip) - set(exec_pip)),
        "only_exec": sorted(set(exec_pip) - set(static_pip)),
        "version_differs": sorted(
            k for k in set(static_pip) & set(exec_pip) if static_pip[k] != exec_pip[k]
        ),
    }


# ------------------------------------------------------------------ text output


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*map(str, r)).rstrip() for r in rows)]


def render(insp: Inspection) -> str:
    c = insp.contents
    size = f"{insp.size / 1e6:.1f} MB" if insp.size else "-"
    lines = [f"Image:   {insp.image}", f"Path:    {insp.path}", f"Format:  {insp.format} ({size})"]
    if insp.sif:
        h = insp.sif["header"]
        used = h["descriptors_total"] - h["descriptors_free"]
        lines.append(
            f"SIF:     version {h['version']}, arch {h['arch']}, id {h['id']}, "
            f"{used} of {h['descriptors_total']} descriptors used "
            f"(table at {h['descriptors_offset']}, data at {h['data_offset']})"
        )
        rows = []
        for d in insp.sif["descriptors"]:
            detail = []
            if "fs_type" in d:
                detail.append(f"{d['fs_type']} {d['part_type']} {d['arch']}")
            if "hash_type" in d:
                detail.append(f"{d['hash_type']} {d['fingerprint'] or ''}".strip())
            if "digest" in d:
                detail.append(d["digest"])
            if "sbom_format" in d:
                detail.append(d["sbom_format"])
            if "message" in d:
                detail.append(f"{d['format']}/{d['message']}")
            link = (
                ("group " if d["link_is_group"] else "object ") + str(d["link"])
                if d["link"]
                else "-"
            )
            rows.append(
                [
                    d["id"],
                    d["data_type"],
                    d["group"] or "-",
                    link,
                    d["offset"],
                    d["size"],
                    d["name"] or "-",
                    " ".join(detail),
                ]
            )
        if rows:
            lines += [
                "  " + r
                for r in _table(
                    rows, ["ID", "TYPE", "GROUP", "LINK", "OFFSET", "SIZE", "NAME", "DETAIL"]
                )
            ]
        if insp.sif.get("signatures"):
            lines.append(f"Signed:  {len(insp.sif['signatures'])} signature(s)")
        if insp.sif.get("note"):
            lines.append(f"Note:    {insp.sif['note']}")
    if insp.squashfs:
        s = insp.squashfs
        lines.append(
            f"SquashFS: {s['compression']}, {s['inodes']} inodes, block {s['block_size']}, "
            f"{s['bytes_used']} bytes at offset {s['offset']}"
        )
    if insp.oci:
        o = insp.oci
        lines.append(
            f"OCI:     {o['os']}/{o['architecture']}, {len(o['layers'])} layer(s)"
            + (f", tags {', '.join(o['tags'])}" if o["tags"] else "")
        )
    lines.append(f"OS:      {c.os_name or 'unknown (no /etc/os-release)'}")
    if c.with_conda is not None:
        lines.append(f"WITH_CONDA: {c.with_conda}  (from {c.with_conda_source})")
    else:
        lines.append("WITH_CONDA: not defined (the image needs no activation, or has no conda)")
    if c.pythons:
        lines.append(
            "Python:  "
            + ", ".join(p.path + (f" -> {p.target}" if p.target else "") for p in c.pythons)
        )
    for env in c.environments:
        mark = "  [activated by $WITH_CONDA]" if env.activated_by_with_conda else ""
        lines.append("")
        lines.append(f"Environment {env.name} ({env.kind}, {env.prefix}){mark}")
        if env.conda_packages:
            lines.append(f"  conda packages ({len(env.conda_packages)}):")
            lines += [
                "    " + r
                for r in _table(
                    [[p.name, p.version, p.build, p.channel] for p in env.conda_packages],
                    ["NAME", "VERSION", "BUILD", "CHANNEL"],
                )
            ]
        if env.pip_packages:
            lines.append(f"  pip packages ({len(env.pip_packages)}):")
            lines += [
                "    " + r
                for r in _table(
                    [[p.name, p.version, p.installer or "-"] for p in env.pip_packages],
                    ["NAME", "VERSION", "INSTALLER"],
                )
            ]
        if not env.conda_packages and not env.pip_packages:
            lines.append("  no packages")
    for w in c.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines) + "\n"


def render_diff(d: Diff) -> str:
    lines = [f"--- {d.a}", f"+++ {d.b}"]
    if d.os:
        lines.append(f"OS: {d.os[0]} -> {d.os[1]}")
    for title, items, sign in (
        ("added", d.added, "+"),
        ("removed", d.removed, "-"),
        ("changed", d.changed, "~"),
    ):
        lines.append(f"{title} ({len(items)}):")
        rows = [
            [
                sign,
                c.environment,
                c.manager,
                c.name,
                c.old or "",
                "->" if c.old and c.new else "",
                c.new or "",
            ]
            for c in items
        ]
        if rows:
            lines += [
                "  " + r for r in _table(rows, ["", "ENV", "BY", "NAME", "OLD", "", "NEW"])[1:]
            ]
    return "\n".join(lines) + "\n"


def render_exec(listing: ExecListing, comparison: dict[str, Any] | None) -> str:
    env = listing.conda_env or "(none activated)"
    lines = [
        f"Image:   {listing.image}",
        f"Ran:     {' '.join(listing.argv[:4])} ...",
        f"Conda environment: {env}"
        + (f" ({listing.conda_prefix})" if listing.conda_prefix else ""),
        f"pip packages ({len(listing.pip)}, via {listing.pip_method}):",
    ]
    lines += [
        "  " + r for r in _table([[p.name, p.version] for p in listing.pip], ["NAME", "VERSION"])
    ]
    if listing.conda is not None:
        lines.append(f"conda packages ({len(listing.conda)}):")
        lines += [
            "  " + r
            for r in _table(
                [[p.name, p.version, p.build, p.channel] for p in listing.conda],
                ["NAME", "VERSION", "BUILD", "CHANNEL"],
            )
        ]
    if comparison is not None:
        same = not (
            comparison["only_static"] or comparison["only_exec"] or comparison["version_differs"]
        )
        lines.append(
            "Static reading of "
            + str(comparison["environment"])
            + ": "
            + (
                "the same pip packages"
                if same
                else f"differs: only static {comparison['only_static']}, "
                f"only --exec {comparison['only_exec']}, "
                f"other version {comparison['version_differs']}"
            )
        )
    return "\n".join(lines) + "\n"
