"""The README's layout section names every package and top-level module of slurmc, and
nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_the_readme_layout_matches_the_tree():
    named = set(re.findall(r"`slurmc/([\w.]+?)/?`", _section()))
    package = REPO / "slurmc"
    actual = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    actual |= {p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert named == actual


def test_the_readme_lists_the_layers_in_the_contracts_order():
    """The order of the packages in the README is the layer order import-linter checks."""
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in contracts["contracts"] if c["type"] == "layers")["layers"]
    order = [
        name.strip().removeprefix("slurmc.")
        for layer in layers
        for name in layer.split("|")
        if name.strip() != "slurmc.__main__"
    ]
    listed = [m for m in re.findall(r"^- `slurmc/([\w]+)(?:/|\.py)`", _section(), re.M)]
    listed_packages = [m for m in listed if m in order]
    assert listed_packages == [m for m in order if m in listed_packages]
