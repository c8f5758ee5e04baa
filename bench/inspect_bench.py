#!/usr/bin/env python3
"""Benchmark of ``slurmc inspect``: does reading cost the metadata, or the image?

    bench/inspect_bench.py [--runs N] [--big-gb 2.1] [--workdir DIR] [--keep]

Builds, under --workdir (default /var/tmp/slurmc-inspect-bench):
  small.sqfs   the lumi test image (scripts/build-test-image), about 21 MB
  big.sqfs     the same root file system plus --big-gb GB of random, incompressible
               files (mksquashfs), and big.sif, the same packed into a SIF file
               (SquashFS at offset 32768)
  many.sqfs    the same root plus 300 fake pip packages of 200 files each (60,000
               more inodes), the shape of a real PyTorch image's site-packages

then times, as the median of --runs runs (warm page cache):
  static       slurmc.usecases.inspect.inspect_image (squashfs-tools behind it)
  pysquashfs   the same discovery through PySquashfsImage (if installed), to
               compare the two ways of reading SquashFS
  exec         `slurmc inspect --exec` through ch-run on small.sqfs

and prints each time and the ratios big/small, many/small, exec/static.
The big files are removed at the end unless --keep. No assertion: numbers only.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slurmc.images.contents import discover  # noqa: E402
from slurmc.images.tree import DIR, FILE, OTHER, SYMLINK, Entry, walk  # noqa: E402
from slurmc.usecases.inspect import Located, inspect_image  # noqa: E402
from slurmc.usecases.inspect_exec import run_exec  # noqa: E402


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def build(workdir: Path, big_gb: float) -> dict[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / "base"
    sh(str(REPO / "scripts" / "build-test-image"), str(base), "--flavor", "lumi")
    out = {"small": base / "image.sqfs"}
    # big: rootfs + random files
    big_root = workdir / "big-root"
    if not (workdir / "big.sqfs").exists():
        shutil.rmtree(big_root, ignore_errors=True)
        shutil.copytree(base / "rootfs", big_root, symlinks=True)
        data = big_root / "data"
        data.mkdir()
        chunk = 64 << 20
        n = int(big_gb * (1 << 30) // chunk) + 1
        with open("/dev/urandom", "rb") as rnd:
            for i in range(n):
                with open(data / f"random-{i:03d}.bin", "wb") as f:
                    f.write(rnd.read(chunk))
        sh(
            "mksquashfs",
            str(big_root),
            str(workdir / "big.sqfs"),
            "-noappend",
            "-all-root",
            "-no-xattrs",
            "-comp",
            "gzip",
            "-no-progress",
            "-quiet",
        )
        shutil.rmtree(big_root)
    out["big"] = workdir / "big.sqfs"
    if not (workdir / "big.sif").exists():
        sh(
            sys.executable,
            str(REPO / "tests" / "doubles" / "sif.py"),
            "pack",
            str(out["big"]),
            str(workdir / "big.sif"),
        )
    out["big-sif"] = workdir / "big.sif"
    # many: rootfs + 60k small files in site-packages
    if not (workdir / "many.sqfs").exists():
        many_root = workdir / "many-root"
        shutil.rmtree(many_root, ignore_errors=True)
        shutil.copytree(base / "rootfs", many_root, symlinks=True)
        sp = many_root / "opt/miniconda3/envs/pytorch/lib/python3.11/site-packages"
        for i in range(300):
            pkg = sp / f"fakepkg{i}"
            pkg.mkdir()
            for j in range(199):
                (pkg / f"mod{j}.py").write_text(f"X = {i * j}\n")
            dist = sp / f"fakepkg{i}-1.0.{i}.dist-info"
            dist.mkdir()
            (dist / "METADATA").write_text(f"Name: fakepkg{i}\nVersion: 1.0.{i}\n\n")
        sh(
            "mksquashfs",
            str(many_root),
            str(workdir / "many.sqfs"),
            "-noappend",
            "-all-root",
            "-no-xattrs",
            "-comp",
            "gzip",
            "-no-progress",
            "-quiet",
        )
        shutil.rmtree(many_root)
    out["many"] = workdir / "many.sqfs"
    return out


class PySquashfsTree:
    """The FileTree contract over PySquashfsImage, for the comparison."""

    def __init__(self, path: str, offset: int = 0) -> None:
        from PySquashfsImage import SquashFsImage

        self.image = SquashFsImage.from_file(path, offset=offset)

    def _node(self, path: str) -> Any:
        node = self.image.root
        for part in [p for p in path.split("/") if p]:
            children = getattr(node, "children", None)
            if children is None or part not in children:
                return None
            node = children[part]
        return node

    def listdir(self, path: str) -> list[Entry] | None:
        node = self._node(path)
        if node is None or not node.is_dir:
            return None
        out = []
        for name, child in node.children.items():
            rel = f"{path}/{name}" if path else name
            if child.is_dir:
                out.append(Entry(rel, DIR))
            elif child.is_symlink:
                out.append(Entry(rel, SYMLINK, 0, child.readlink()))
            elif child.is_file:
                out.append(Entry(rel, FILE, child.size))
            else:
                out.append(Entry(rel, OTHER))
        return out

    def find(self, patterns: Sequence[str]) -> list[Entry]:
        return walk(self.listdir, patterns)

    def read(self, paths: Sequence[str]) -> dict[str, bytes]:
        out = {}
        for p in paths:
            node = self._node(p)
            if node is not None and node.is_file:
                out[p] = node.read_bytes()
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-gb", type=float, default=2.1)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/slurmc-inspect-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the big images")
    args = ap.parse_args()
    os.environ.setdefault("USER", "root")

    t = time.perf_counter()
    images = build(args.workdir, args.big_gb)
    print(f"built in {time.perf_counter() - t:.1f} s")
    for name, path in images.items():
        print(f"  {name:<8} {path.stat().st_size / 1e9:7.3f} GB  {path}")

    results: dict[str, dict[str, float]] = {}
    for name, path in images.items():
        row = results.setdefault(name, {})
        row["static"] = median_time(functools.partial(inspect_image, str(path)), args.runs)
        offset = 32768 if name.endswith("-sif") else 0
        try:
            import PySquashfsImage  # noqa: F401

            def py_discover(p: str = str(path), o: int = offset) -> object:
                return discover(PySquashfsTree(p, o))

            row["pysquashfs"] = median_time(py_discover, args.runs)
        except ImportError:
            pass
    small = images["small"]
    results["small"]["exec"] = median_time(
        lambda: run_exec(Located(str(small), str(small)), "devcluster", dict(os.environ)),
        args.runs,
    )

    print(f"\nmedian of {args.runs} runs, seconds (warm page cache)")
    print(f"{'image':<9} {'static':>9} {'pysquashfs':>11} {'exec':>8}")
    for name, row in results.items():

        def cell(k: str, w: int, row: dict[str, float] = row) -> str:
            return f"{row[k]:{w}.4f}" if k in row else f"{'-':>{w}}"

        print(f"{name:<9} {cell('static', 9)} {cell('pysquashfs', 11)} {cell('exec', 8)}")
    s = results["small"]["static"]
    print("\nratios")
    for name in ("big", "big-sif", "many"):
        print(f"  static {name}/small: {results[name]['static'] / s:6.2f}")
        if "pysquashfs" in results[name]:
            r = results[name]["pysquashfs"] / results[name]["static"]
            print(f"  {name}: pysquashfs/static: {r:6.2f}")
    print(f"  exec/static (small): {results['small']['exec'] / s:6.2f}")
    if not args.keep:
        for name in ("big", "big-sif", "many"):
            images[name].unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
