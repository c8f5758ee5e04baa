"""The imports and resolve sections: where start-up time goes; caches of many images."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from base import BenchBase
from measure import IMPORT_LINE, MISSING_REF, TARGET_REF, log, run


class SectionsImports(BenchBase):
    def sec_imports(self) -> None:
        site = ["--site", "devcluster"]
        out: dict[str, Any] = {}
        dry = ["run", *site, "--dry-run", self.image, "--", "true"]
        cases = [("help", ["--help"], self.env), ("run_dry_run", dry, self.env)]
        if self.env_caller.get("PYTHONDONTWRITEBYTECODE"):
            cases.append(("run_dry_run_caller_bytecode", dry, self.env_caller))
        for key, argv, env in cases:
            per_mod: dict[str, dict[str, list[int]]] = {}
            totals = []
            order: list[tuple[str, int]] = []
            reps = 3
            for rep in range(reps):
                p = subprocess.run(
                    [self.python, "-X", "importtime", self.slurmc, *argv],
                    env=env,
                    cwd=self.jobdir,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                total = 0
                for line in p.stderr.splitlines():
                    m = IMPORT_LINE.match(line)
                    if not m:
                        continue
                    self_us, cum_us, indent, name = int(m[1]), int(m[2]), m[3], m[4]
                    depth = max(0, (len(indent) - 1) // 2)
                    total += self_us
                    d = per_mod.setdefault(name, {"self": [], "cum": []})
                    d["self"].append(self_us)
                    d["cum"].append(cum_us)
                    if rep == 0:
                        order.append((name, depth))
                totals.append(total)
            depth_of = dict(order)
            mods: list[dict[str, Any]] = [
                {
                    "module": name,
                    "self_us": int(statistics.median(d["self"])),
                    "cumulative_us": int(statistics.median(d["cum"])),
                    "depth": depth_of.get(name, 0),
                }
                for name, d in per_mod.items()
            ]
            top_level = sorted(
                (m for m in mods if m["depth"] == 0), key=lambda m: -m["cumulative_us"]
            )
            by_self = sorted(mods, key=lambda m: -m["self_us"])
            slurmc_mods = sorted(
                (m for m in mods if m["module"].split(".")[0] == "slurmc"),
                key=lambda m: -m["cumulative_us"],
            )
            pkgs: dict[str, int] = {}
            for mod in mods:
                pkg = mod["module"].split(".")[0]
                pkgs[pkg] = pkgs.get(pkg, 0) + mod["self_us"]
            out[key] = {
                "command": ("PYTHONDONTWRITEBYTECODE=1 " if env is self.env_caller else "")
                + "python -X importtime slurmc "
                + " ".join("IMAGE.sqfs" if a == self.image else a for a in argv),
                "runs": reps,
                "total_import_us": int(statistics.median(totals)),
                "modules": len(mods),
                "top_cumulative": top_level[:15],
                "top_self": by_self[:15],
                "slurmc_modules": slurmc_mods[:15],
                "by_package_self_us": dict(sorted(pkgs.items(), key=lambda kv: -kv[1])[:15]),
            }
        self.extra["imports"] = out

    # fake caches

    @staticmethod
    def fake_refs(n: int) -> list[str]:
        families = (
            "determinedai/environments:cuda-11.3-pytorch-1.10-tf-2.8-gpu-{:07d}",
            "ubuntu:22.04-{:07d}",
            "nvcr.io/nvidia/pytorch:24.01-py3-{:07d}",
            "127.0.0.1:5443/slurmc/test:t{:07d}",
        )
        refs = [TARGET_REF]
        refs += [families[i % 4].format(i) for i in range(n - 1)]
        return refs

    def build_cache(self, n: int) -> Path:
        from slurmc.grammar.refs import parse_reference
        from slurmc.runtimes import get_runtime

        root = self.work / "caches" / f"n{n}"
        stamp = root / f".bench-complete-{n}"
        if stamp.exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        rt = get_runtime("charliecloud")
        made: set[str] = set()
        t = time.perf_counter()
        for ref in self.fake_refs(n):
            rel = rt.cache_relpath(parse_reference(ref))
            d = os.path.dirname(rel)
            if d not in made:
                (root / d).mkdir(parents=True, exist_ok=True)
                made.add(d)
            os.close(os.open(root / rel, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
        stamp.touch()
        log(f"  built a fake cache of {n} images in {time.perf_counter() - t:.1f} s")
        return root

    def sec_resolve(self) -> None:
        from slurmc.cache.manage import entries
        from slurmc.core.roots import Roots
        from slurmc.grammar.refs import parse_image
        from slurmc.runtimes import get_runtime
        from slurmc.usecases.resolve import resolve_image

        rt = get_runtime("charliecloud")
        site_root = str(self.work / "site" / "images")
        roots = {n: self.build_cache(n) for n in self.sizes}
        expected = rt.cache_relpath(parse_image(TARGET_REF).ref)  # type: ignore[arg-type]
        env, cwd = self.env, self.jobdir

        # sanity: slurmc sees exactly n images, and the CLI resolves the target in each cache
        for n, root in roots.items():
            found = len(entries([str(root)], rt))
            if found != n:
                self.warnings.append(f"fake cache of {n}: slurmc's scan found {found} images")
            _, text = run(
                self.slurmc_argv(
                    "run",
                    "--site",
                    "devcluster",
                    "--dry-run",
                    "--no-conda",
                    "--cache-dir",
                    str(root),
                    TARGET_REF,
                    "--",
                    "true",
                ),
                env=env,
                cwd=cwd,
                capture=True,
            )
            if str(root / expected) not in text:
                self.warnings.append(f"cache of {n}: the dry-run did not name {root / expected}")

        # CLI, round-robin over the cache sizes
        cmds: dict[str, Callable[[], float]] = {}
        for n, root in roots.items():
            argv = self.slurmc_argv(
                "run",
                "--site",
                "devcluster",
                "--dry-run",
                "--no-conda",
                "--cache-dir",
                str(root),
                TARGET_REF,
                "--",
                "true",
            )
            cmds[str(n)] = self.timer(argv)
        times = self.round_robin(cmds, max(5, self.runs * 3 // 4), self.warmup)
        for n in self.sizes:
            self.row(
                f"resolve_cli_{n}",
                "resolve",
                f"slurmc run --dry-run REF, cache of {n:,}",
                times[str(n)],
                command=f"slurmc run --site devcluster --dry-run --no-conda --cache-dir "
                f"CACHE_{n} {TARGET_REF} -- true",
            )

        # in-process: parse_image + resolve_image, per call (hit and miss)
        loops, reps = (200, 7) if self.quick else (2000, 15)
        for kind, ref in (("hit", TARGET_REF), ("miss", MISSING_REF)):
            per: dict[int, list[float]] = {n: [] for n in self.sizes}
            for _ in range(reps):
                for n, root in roots.items():
                    r = Roots(caches=(str(root), site_root))
                    t = time.perf_counter()
                    for _ in range(loops):
                        resolve_image(parse_image(ref), rt, r, cwd=str(cwd), env=env)
                    per[n].append((time.perf_counter() - t) / loops)
            for n in self.sizes:
                self.row(
                    f"resolve_fn_{kind}_{n}",
                    "resolve",
                    f"parse_image+resolve_image ({kind}), cache of {n:,}",
                    per[n],
                    command=f"in-process, mean of {loops} calls per sample",
                    in_process=True,
                )

        # slurmc cache ls over each cache
        ls_runs = 3 if self.quick else 5
        cmds = {}
        for n, root in roots.items():
            argv = self.slurmc_argv("cache", "ls", "--site", "devcluster", "--cache-dir", str(root))
            cmds[str(n)] = self.timer(argv)
        times = self.round_robin(cmds, ls_runs, 1)
        for n in self.sizes:
            self.row(
                f"cache_ls_{n}",
                "cache ls",
                f"slurmc cache ls, {n:,} images",
                times[str(n)],
                command=f"slurmc cache ls --site devcluster --cache-dir CACHE_{n} >/dev/null",
            )
        big = max(self.sizes)
        scan_times = []
        for _ in range(ls_runs):
            t = time.perf_counter()
            entries([str(roots[big])], rt)
            scan_times.append(time.perf_counter() - t)
        self.row(
            f"cache_scan_{big}",
            "cache ls",
            f"slurmc.cache.manage.entries, {big:,} images",
            scan_times,
            command="in-process (the scan behind cache ls, no printing)",
            in_process=True,
        )
        self.notes.append(
            f"resolve: fake caches of {', '.join(f'{n:,}' for n in self.sizes)} empty files named "
            "by Charliecloud's cache_relpath (suffix .sqfs), in 4 repositories (determinedai/"
            "environments, library/ubuntu, nvcr.io/nvidia/pytorch, 127.0.0.1:5443/slurmc/test), "
            f"so the largest directory holds a quarter of the images; the looked-up image "
            f"{TARGET_REF} is in the largest directory. Warm dentry cache: a cold shared file "
            "system would add its own latency to the one stat."
        )
