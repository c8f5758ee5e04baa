"""Where the reference SIF images and siftool's golden outputs are: Debian's
golang-github-sylabs-sif-dev, installed by `scripts/devcluster install` (sylabs/sif's own
test/images/*.sif and internal/app/siftool/testdata). Tests that need them fail, never
skip, when the package is missing."""

from __future__ import annotations

from pathlib import Path

SIF_SOURCE = Path("/usr/share/gocode/src/github.com/sylabs/sif")
SIF_IMAGES = SIF_SOURCE / "test" / "images"
SIFTOOL_GOLDEN = SIF_SOURCE / "internal" / "app" / "siftool" / "testdata"
MISSING = (
    f"{SIF_IMAGES} is missing: run scripts/devcluster install "
    "(it installs Debian's golang-github-sylabs-sif-dev)"
)


def sif_image(name: str) -> Path:
    path = SIF_IMAGES / name
    assert path.is_file(), MISSING
    return path
