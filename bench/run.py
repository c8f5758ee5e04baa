#!/usr/bin/env python3
"""What slurmc costs against the raw tools, measured side by side in one run (issue #6).

    bench/run.py [--quick] [--out bench/results.json] [--keep] [--workdir DIR]
                 [--slurmc PATH] [--runs N] [--only SECTION,...]

Runs on the local test cluster (scripts/devcluster up, scripts/registry up; both are
idempotent and never stopped here) and measures, in the same run:

  startup   `python -c pass` (the floor: the interpreter slurmc's console script runs
            under), `sbatch --parsable` of an already-rendered script, `slurmc --help`,
            `slurmc run --dry-run` (local image, with and without --no-conda) and
            `slurmc run` (a real submission), interleaved round-robin, after warm-up
  imports   `python -X importtime` of `slurmc --help` and `slurmc run --dry-run`
  coldfs    file-system calls of one `slurmc run` and one submitit submission, and both
            timed with every file-system call delayed (strace --inject), as on a cold
            shared file system
  resolve   image resolution in fake caches of 10, 1,000 and 100,000 images (empty files
            named by runtime.cache_relpath): `slurmc run --dry-run REF` and
            parse_image + resolve_image in-process; `slurmc cache ls` over each cache
  inspect   static `slurmc inspect` (and inspect_image in-process) of a small SquashFS
            image and of the same plus >= 2 GB of random data
  pulls     1/8/32 concurrent `slurmc cache pull` of one missing image (a fresh cache dir
            and a fresh registry repository per trial), blob transfers counted in the
            registry's access log
  array     1,000 tasks: one `slurmc run --array 0-999` vs one raw sbatch of the rendered
            array script; a loop of `slurmc run` calls vs a loop of raw sbatch calls

Jobs of the submission benchmarks are submitted held (`--hold`, in the rendered script
for both slurmc and raw sbatch) and cancelled right after, so they never occupy the
node or perturb later measurements. Prints a table (median, IQR, min, ratio to the
floor) and the issue's targets, and writes everything, with machine information and
load averages, to --out. bench/table.py turns that file into bench/RESULTS.md.
Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from measure import REPO, CommandFailed, loadavg, log
from report import Report
from sections_array import SectionsArray
from sections_coldfs import SectionsColdfs
from sections_imports import SectionsImports
from sections_inspect import SectionsInspect
from sections_startup import SectionsStartup


class Bench(
    SectionsStartup, SectionsImports, SectionsColdfs, SectionsInspect, SectionsArray, Report
):
    # ---- main

    def main(self) -> int:
        started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        t_start = time.perf_counter()
        load_start = loadavg()
        self.cleanup_paths = [
            self.work / "jobs",
            self.work / "site",
            self.work / "jobs-template",
            *self.work.glob("jobs-[0-9]*"),
        ]
        all_sections = [
            "startup",
            "imports",
            "coldfs",
            "jobs",
            "resolve",
            "inspect",
            "pulls",
            "array",
        ]
        self.only = self.args.only.split(",") if self.args.only else all_sections
        unknown = set(self.only) - set(all_sections)
        if unknown:
            log(
                f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(all_sections)}"
            )
            return 2
        self.machine_info = {}
        try:
            log("setting up (devcluster up, registry up, test images)")
            try:
                self.setup()
            except CommandFailed as exc:
                log(f"bench/run.py: set-up failed, nothing measured: {exc}")
                return 1
            self.machine_info = self.machine()
            for name in all_sections:
                if name not in self.only:
                    continue
                log(f"[{name}] load {loadavg()}")
                t = time.perf_counter()
                la = loadavg()
                try:
                    getattr(self, f"sec_{name}")()
                except Exception as exc:  # record it and go on with the other sections
                    self.errors.append(
                        {
                            "section": name,
                            "error": str(exc),
                            "traceback": traceback.format_exc()[-3000:],
                        }
                    )
                    log(f"  FAILED: {exc}")
                self.sections[name] = {
                    "duration_s": round(time.perf_counter() - t, 1),
                    "load": {"start": la, "end": loadavg()},
                }
                log(f"  {self.sections[name]['duration_s']} s")
            self.evaluate()
        finally:
            self.cancel(self.jobs)
            for p in self.cleanup_paths:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            if not self.args.keep:
                shutil.rmtree(self.work / "pycache", ignore_errors=True)
                shutil.rmtree(self.work / "caches", ignore_errors=True)
                shutil.rmtree(self.work / "inspect", ignore_errors=True)
        duration = time.perf_counter() - t_start
        self.print_table()
        res = self.result(started, duration, load_start)
        cores = os.cpu_count() or 1
        busy = [
            name
            for name, sec in self.sections.items()
            if sec["load"]["start"][0] > cores and name != "array"  # array follows the pulls
        ]
        if load_start[0] > cores or busy:
            res["warnings"].append(
                f"1-minute load average above the core count ({cores}) at the start of the run "
                f"({load_start[0]}) or of section(s) {', '.join(busy) or '-'}: other work shared "
                "the machine; compare ratios, not absolute times"
            )
        if "pulls" in self.sections:
            res["notes"].append(
                "load: the pulls section itself raises the 1-minute load average (up to 32 "
                "slurmc processes and a mksquashfs), so the array section after it starts with "
                "a high load average that is the bench's own."
            )
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")
        print(
            f"\n{res['mode']} run took {duration:.0f} s (load {load_start} -> "
            f"{res['load']['end']}); results in {out}"
        )
        return 1 if self.errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few runs")
    ap.add_argument("--out", default=str(REPO / "bench" / "results.json"))
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the fake caches and the big image under --workdir for the next run",
    )
    ap.add_argument("--workdir", default="/var/tmp/slurmc-bench")
    ap.add_argument("--slurmc", help="the slurmc console script (default: next to this python)")
    ap.add_argument("--runs", type=int, help="runs per fast command (default 20, quick 5)")
    ap.add_argument(
        "--only",
        help="comma-separated sections: startup,imports,coldfs,jobs,resolve,inspect,pulls,array",
    )
    return Bench(ap.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
