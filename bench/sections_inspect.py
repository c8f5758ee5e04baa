"""The inspect and pulls sections: static reading of big images; concurrent pulls."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from base import BenchBase
from measure import BLOB_GET, IMAGES_DIR, REPO, CommandFailed, log, run, stats


class SectionsInspect(BenchBase):
    def sec_inspect(self) -> None:
        from slurmc.usecases.inspect import inspect_image

        d = self.work / "inspect"
        d.mkdir(parents=True, exist_ok=True)
        rootfs = IMAGES_DIR / "lumi" / "rootfs"
        opts = ["-noappend", "-all-root", "-no-xattrs", "-no-progress", "-quiet", "-noD"]
        small, big = d / "small.sqfs", d / "big.sqfs"
        chunk = 64 << 20
        nchunks = math.ceil(self.big_gib * (1 << 30) / chunk)
        t = time.perf_counter()
        if not small.exists():
            run(["mksquashfs", str(rootfs), str(small), *opts])
        want = d / f".big-{nchunks}x64MiB"
        if not (big.exists() and want.exists()):
            for f in d.glob(".big-*"):
                f.unlink()
            big.unlink(missing_ok=True)
            pseudo = ["-p", "data d 755 root root"]
            for i in range(nchunks):
                pseudo += [
                    "-p",
                    f"data/random-{i:03d}.bin f 444 root root head -c {chunk} /dev/urandom",
                ]
            run(["mksquashfs", str(rootfs), str(big), *opts, *pseudo])
            want.touch()
        build_s = time.perf_counter() - t
        sizes = {"small": small.stat().st_size, "big": big.stat().st_size}
        log(
            f"  images: small {sizes['small'] / 1e6:.1f} MB, big {sizes['big'] / 1e9:.2f} GB "
            f"(built in {build_s:.1f} s)"
        )
        cmds: dict[str, Callable[[], float]] = {
            name: self.timer(self.slurmc_argv("inspect", str(p)))
            for name, p in (("small", small), ("big", big))
        }
        runs = max(5, self.runs // 2)
        times = self.round_robin(cmds, runs, self.warmup)
        for name in ("small", "big"):
            self.row(
                f"inspect_cli_{name}",
                "inspect",
                f"slurmc inspect, {name} image ({sizes[name] / 1e9:.2f} GB)",
                times[name],
                command=f"slurmc inspect {name}.sqfs >/dev/null",
                size_bytes=sizes[name],
            )
        fn_cmds: dict[str, Callable[[], float]] = {}
        for name, image in (("small", small), ("big", big)):

            def timed_inspect(path: Path = image) -> float:
                t = time.perf_counter()
                inspect_image(str(path))
                return time.perf_counter() - t

            fn_cmds[name] = timed_inspect
        times = self.round_robin(fn_cmds, self.runs, self.warmup)
        for name in ("small", "big"):
            self.row(
                f"inspect_fn_{name}",
                "inspect",
                f"inspect_image, {name} image ({sizes[name] / 1e9:.2f} GB)",
                times[name],
                command="in-process slurmc.usecases.inspect.inspect_image",
                in_process=True,
                size_bytes=sizes[name],
            )
        self.extra["inspect_build_s"] = round(build_s, 1)
        self.notes.append(
            "inspect: both images are mksquashfs of the lumi test rootfs with the same options "
            "(gzip metadata, -noD: data blocks stored uncompressed); big adds "
            f"{nchunks} files of 64 MiB from /dev/urandom (mksquashfs pseudo files, no temporary "
            "copy). Warm page cache (no drop_caches on a shared machine)."
        )
        self.cleanup_paths.append(big)

    def sec_pulls(self) -> None:
        reg = self.registry
        host = reg.get("SLURMC_TEST_REGISTRY")
        logf = reg.get("SLURMC_REGISTRY_LOG")
        if not host or not logf:
            raise CommandFailed("scripts/registry up did not export SLURMC_TEST_REGISTRY/LOG")
        rootfs = IMAGES_DIR / "plain" / "rootfs"
        env = dict(self.env)
        env["REQUESTS_CA_BUNDLE"] = (
            reg.get("SLURMC_REGISTRY_CA_BUNDLE") or reg["SLURMC_REGISTRY_CA"]
        )
        trials = {1: 1, 4: 1} if self.quick else {1: 3, 8: 3, 32: 3}
        run_id = uuid.uuid4().hex[:8]
        results: dict[int, list[dict[str, Any]]] = {}
        pulls_dir = self.work / "pulls"
        self.cleanup_paths.append(pulls_dir)
        for n in self.pull_ns:
            for t in range(trials.get(n, 1)):
                repo = f"bench/pull-{run_id}-n{n}-t{t}"
                ref = f"{host}/{repo}:v1"
                run(
                    [str(REPO / "scripts" / "push-test-image"), str(rootfs), ref],
                    env={**self.base_env, **reg},
                )
                cache = pulls_dir / f"n{n}-t{t}"
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir(parents=True)
                offset = os.path.getsize(logf)
                argv = self.slurmc_argv(
                    "cache", "pull", "--site", "devcluster", "--cache-dir", str(cache), ref
                )
                t0 = time.perf_counter()
                procs = [
                    subprocess.Popen(
                        argv,
                        env=env,
                        cwd=self.jobdir,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for _ in range(n)
                ]
                ends = self.finish_times(procs, t0)
                wall = max(ends)
                outs = [p.communicate() for p in procs]
                pullers = [i for i, (_, e) in enumerate(outs) if "pulling " in e]
                puller_end = ends[pullers[0]] if len(pullers) == 1 else None
                if len(pullers) != 1:
                    self.warnings.append(f"{n} concurrent pulls: {len(pullers)} processes pulled")
                failed = [
                    (p.returncode, e.strip()[-300:])
                    for p, (_, e) in zip(procs, outs, strict=True)
                    if p.returncode != 0
                ]
                paths = {o.strip().splitlines()[-1] for o, _ in outs if o.strip()}
                gets, digests = self.blob_gets(logf, offset, repo)
                waiters = [e for i, e in enumerate(ends) if i not in pullers]
                results.setdefault(n, []).append(
                    {
                        "wall_s": wall,
                        "blob_gets": gets,
                        "distinct_blobs": len(digests),
                        "failed": len(failed),
                        "paths": sorted(paths),
                        "puller_exit_s": puller_end,
                        "waiter_exit_s": stats(waiters) if waiters else None,
                        "last_waiter_after_puller_s": (max(waiters) - puller_end)
                        if waiters and puller_end is not None
                        else None,
                    }
                )
                if failed:
                    self.warnings.append(f"{n} concurrent pulls: {len(failed)} failed: {failed[0]}")
                shutil.rmtree(cache, ignore_errors=True)
                lag = results[n][-1]["last_waiter_after_puller_s"]
                log(
                    f"  {n:>2} concurrent pulls: {wall:.2f} s, {gets} blob GETs "
                    f"({len(digests)} distinct), {len(failed)} failed"
                    + (
                        f"; puller done at {puller_end:.2f} s, last waiter {lag:.2f} s later"
                        if lag is not None and puller_end is not None
                        else ""
                    )
                )
        one = statistics.median(r["wall_s"] for r in results[1])
        self.extra["pulls"] = {str(n): v for n, v in results.items()}
        for n, trs in results.items():
            gets_per_trial = [r["blob_gets"] for r in trs]
            blobs = max(r["distinct_blobs"] for r in trs) or 1
            walls = [float(r["wall_s"]) for r in trs]
            label = (
                "one slurmc cache pull"
                if n == 1
                else f"{n} concurrent slurmc cache pull (total wall)"
            )
            self.row(
                f"pull_{n}",
                "pulls",
                label,
                walls,
                command=f"{n} x slurmc cache pull --site devcluster --cache-dir NEW REG/NEW:v1",
                concurrency=n,
                trials=len(trs),
                blob_gets=gets_per_trial,
                distinct_blobs=blobs,
                transfers=[g / blobs for g in gets_per_trial],
                ratio_to_one_pull=statistics.median(walls) / one,
                failed=sum(r["failed"] for r in trs),
                puller_exit_s=[r["puller_exit_s"] for r in trs],
                last_waiter_after_puller_s=[r["last_waiter_after_puller_s"] for r in trs],
            )
        self.notes.append(
            "pulls: per trial a fresh registry repository (push-test-image of the plain rootfs, "
            "one 20 MB layer + config) and a fresh cache dir; N processes started together, the "
            "wall time is from the first start to the last exit; a transfer = each of the "
            "image's blobs fetched once (blob GETs with status 200 / distinct blobs)."
        )

    @staticmethod
    def finish_times(procs: list[subprocess.Popen[str]], t0: float) -> list[float]:
        """Seconds from t0 to each process's exit (polled every 5 ms; outputs are small)."""
        ends: list[float | None] = [None] * len(procs)
        while any(e is None for e in ends):
            for i, p in enumerate(procs):
                if ends[i] is None and p.poll() is not None:
                    ends[i] = time.perf_counter() - t0
            time.sleep(0.005)
        return [e for e in ends if e is not None]

    @staticmethod
    def blob_gets(logf: str, offset: int, name: str) -> tuple[int, set[str]]:
        digests: set[str] = set()
        deadline = time.monotonic() + 2.0
        while True:
            n, ds = 0, set()
            with open(logf, "rb") as f:
                f.seek(offset)
                for raw in f:
                    m = BLOB_GET.match(raw.decode("utf-8", "replace"))
                    if m and m["status"] == "200" and m["name"] == name:
                        n += 1
                        ds.add(m["digest"])
            digests = ds
            if n >= 2 or time.monotonic() > deadline:  # the log line follows the response
                break
            time.sleep(0.1)
        time.sleep(0.3)
        with open(logf, "rb") as f:  # once more: no late line pushed the count up
            f.seek(offset)
            n = sum(
                1
                for raw in f
                if (m := BLOB_GET.match(raw.decode("utf-8", "replace")))
                and m["status"] == "200"
                and m["name"] == name
            )
        return n, digests
