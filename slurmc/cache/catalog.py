"""Read-only image catalogs, such as LUMI's flat directory of SIF files.

LUMI names its base images
``lumi-<pkg>-rocm-<rocm>-python-<py>-<pkg>-<version>[-dockerhash-<hash>].sif``
(FIELD-NOTES §4; LUMI's own examples also leave the ``-dockerhash-`` part out).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slurmc.errors import ImageNotFoundError

_LUMI = re.compile(
    r"lumi-(?P<package>[a-z0-9][a-z0-9_.]*(?:-[a-z0-9_.]+)*?)"
    r"-rocm-(?P<rocm>\d[\d.]*)-python-(?P<python>\d[\d.]*)"
    r"-(?P=package)-(?P<version>.+?)(?:-dockerhash-(?P<dockerhash>[0-9a-f]+))?\.sif\Z"
)


@dataclass(frozen=True)
class CatalogImage:
    path: str
    package: str
    rocm: str
    python: str
    version: str
    dockerhash: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "package": self.package,
            "version": self.version,
            "rocm": self.rocm,
            "python": self.python,
            "dockerhash": self.dockerhash,
            "path": self.path,
        }


def parse_name(path: str) -> CatalogImage | None:
    m = _LUMI.match(os.path.basename(path))
    if not m:
        return None
    return CatalogImage(path, m["package"], m["rocm"], m["python"], m["version"], m["dockerhash"])


def list_catalogs(dirs: Iterable[str]) -> list[CatalogImage]:
    found = []
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            img = parse_name(os.path.join(d, name))
            if img:
                found.append(img)
    return found


def version_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: ``v2.10`` after ``v2.9``; a leading ``v`` is ignored."""
    text = text[1:] if text[:1] in "vV" and text[1:2].isdigit() else text
    parts = re.findall(r"\d+|[^\d]+", text)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def matches(
    img: CatalogImage,
    package: str | None,
    version: str | None,
    rocm: str | None,
    python: str | None,
) -> bool:
    def prefix(value: str, want: str | None) -> bool:  # "6.2" matches "6.2.1"
        return want is None or value == want or value.startswith(want + ".")

    return (
        (package is None or img.package == package)
        and (version is None or img.version == version or img.version == f"v{version}")
        and prefix(img.rocm, rocm)
        and prefix(img.python, python)
    )


def newest_first(images: Sequence[CatalogImage]) -> list[CatalogImage]:
    return sorted(
        images,
        key=lambda i: (version_key(i.version), version_key(i.rocm), version_key(i.python)),
        reverse=True,
    )


def pick(
    dirs: Iterable[str],
    package: str,
    version: str | None = None,
    rocm: str | None = None,
    python: str | None = None,
) -> CatalogImage:
    dirs = list(dirs)
    candidates = [i for i in list_catalogs(dirs) if matches(i, package, version, rocm, python)]
    if not candidates:
        wanted = package + (f" {version}" if version else "")
        raise ImageNotFoundError(
            f"no catalog image for {wanted} in {', '.join(dirs) or '(no catalogs)'}; "
            "`slurmc images` lists what there is"
        )
    return newest_first(candidates)[0]
