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

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slurmc.errors import ImageNotFoundError, SlurmcError, ValidationError
from slurmc.images import ImageFormatError
from slurmc.images.contents import discover
from slurmc.images.metadata import Contents, Package
from slurmc.images.tree import DirectoryTree, FileTree
from slurmc.runtimes import available, get_runtime

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
