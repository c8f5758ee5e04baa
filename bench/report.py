"""The targets of the issues, the table printed and the JSON written."""

from __future__ import annotations

from typing import Any

from base import BenchBase
from measure import fmt_time, loadavg


class Report(BenchBase):
    # ---- targets

    def evaluate(self) -> None:
        floor, sbatch = self.median("floor"), self.median("sbatch")
        h, r = self.median("help"), self.median("run")
        if floor and h:
            self.target(
                "help",
                "slurmc --help <= 3 x python -c pass",
                h / floor,
                3.0,
                f"{fmt_time(h)} / {fmt_time(floor)}",
            )
        if floor and sbatch and r:
            self.target(
                "run",
                "slurmc run (submission included) <= 5 x (python -c pass + sbatch --parsable)",
                r / (floor + sbatch),
                5.0,
                f"{fmt_time(r)} / ({fmt_time(floor)} + {fmt_time(sbatch)})",
            )
        echo, peer = self.median("run_echo"), self.median("submitit")
        if echo and peer:
            self.target(
                "run_vs_submitit",
                "slurmc run <= 1.0 x submitit, the same containerized command (held)",
                echo / peer,
                1.0,
                f"{fmt_time(echo)} / {fmt_time(peer)}",
            )
        dry = self.median("dry_run")
        if floor and dry:
            self.target(
                "dry_run",
                "slurmc run --dry-run <= 4 x python -c pass",
                dry / floor,
                4.0,
                f"{fmt_time(dry)} / {fmt_time(floor)}",
            )
        counts = self.extra.get("jobs_counts")
        if counts:
            a, b = self.median(f"jobs_newest_{counts[0]}"), self.median(f"jobs_newest_{counts[-1]}")
            if a and b:
                self.target(
                    "jobs_newest",
                    f"slurmc jobs with {counts[-1]:,} records <= 1.3 x with {counts[0]}",
                    b / a,
                    1.3,
                    f"{fmt_time(b)} / {fmt_time(a)}",
                )
            a, b = self.median(f"jobs_all_{counts[0]}"), self.median(f"jobs_all_{counts[-1]}")
            if a and b:
                per = (b - a) / (counts[-1] - counts[0])
                self.target(
                    "jobs_all_per_record",
                    "slurmc jobs -n 0 --json: under 1 ms a record (slope between the two sizes)",
                    per * 1000,
                    1.0,
                    f"({fmt_time(b)} - {fmt_time(a)}) / {counts[-1] - counts[0]:,} records "
                    f"= {per * 1e6:.0f} µs a record",
                )
        small, big = min(self.sizes), max(self.sizes)
        for kind, label in (
            ("fn_hit", "in-process parse+resolve"),
            ("cli", "slurmc run --dry-run"),
        ):
            a, b = self.median(f"resolve_{kind}_{small}"), self.median(f"resolve_{kind}_{big}")
            if a and b:
                self.target(
                    f"resolve_{kind}",
                    f"resolution in a {big:,}-image cache within 10% of "
                    f"a {small}-image cache ({label})",
                    b / a,
                    1.10,
                    f"{fmt_time(b)} / {fmt_time(a)}; "
                    + self.min_ratio(f"resolve_{kind}", small, big),
                )
        pulls = self.extra.get("pulls")
        if pulls:
            n = max(int(k) for k in pulls)
            row = self.get(f"pull_{n}")
            if row:
                ex = row["extra"]
                transfers = max(ex["transfers"])
                ratio = ex["ratio_to_one_pull"]
                ok = transfers == 1 and ratio <= 1.3 and not ex["failed"]
                self.target(
                    "pulls",
                    f"{n} concurrent pulls of one image: one transfer, total time <= 1.3 x "
                    "one pull",
                    ratio,
                    1.3,
                    f"{fmt_time(row['median'])} vs {fmt_time(self.median('pull_1'))} for one pull; "
                    f"blob GETs per trial {ex['blob_gets']} for {ex['distinct_blobs']} blobs "
                    f"= {transfers:g} transfer(s); {ex['failed']} failed",
                    met=ok,
                )
        for kind, label in (("fn", "inspect_image in-process"), ("cli", "slurmc inspect")):
            a, b = self.median(f"inspect_{kind}_small"), self.median(f"inspect_{kind}_big")
            if a and b:
                size = self.get(f"inspect_{kind}_big")["extra"]["size_bytes"]  # type: ignore[index]
                self.target(
                    f"inspect_{kind}",
                    f"static inspect of a {size / 1e9:.2f} GB image <= 1.2 x a small one ({label})",
                    b / a,
                    1.2,
                    f"{fmt_time(b)} / {fmt_time(a)}; "
                    + self.min_ratio(f"inspect_{kind}", "small", "big"),
                )
        if self.quick:
            self.notes.append(
                "quick mode: smaller sizes and fewer runs than the issue asks; the "
                "targets are indicative only."
            )

    # ---- output

    def print_table(self) -> None:
        floor = self.floor
        print()
        print(f"{'measurement':<56} {'n':>4} {'median':>10} {'IQR':>10} {'min':>10} {'x floor':>8}")
        section = None
        for r in self.rows:
            if r["section"] != section:
                section = r["section"]
                print(f"-- {section}")
            ratio = "-" if r["in_process"] or not floor else f"{r['median'] / floor:.1f}"
            print(
                f"{r['label'][:56]:<56} {r['n']:>4} {fmt_time(r['median']):>10} "
                f"{fmt_time(r['iqr']):>10} {fmt_time(r['min']):>10} {ratio:>8}"
            )
        arr = self.extra.get("array")
        if arr:

            def how(k: str) -> str:
                calls = arr[f"{k}_measured_calls"]
                return f" (extrapolated from {calls})" if arr[f"{k}_extrapolated"] else ""

            print(
                f"\n{arr['tasks']:,} tasks: one slurmc array {fmt_time(arr['array_slurmc_s'])}, "
                f"one raw sbatch array {fmt_time(arr['array_sbatch_s'])}; loop of slurmc run "
                f"{fmt_time(arr['loop_slurmc_total_s'])}{how('loop_slurmc')}, loop of raw "
                f"sbatch {fmt_time(arr['loop_sbatch_total_s'])}{how('loop_sbatch')}"
            )
        if self.targets:
            print("\ntargets")
            for t in self.targets:
                mark = {True: "met", False: "MISSED", None: "?"}[t["met"]]
                val = "-" if t["value"] is None else f"{t['value']:.2f}"
                print(
                    f"  {mark:<6} {val:>6} (limit {t['limit']:g})  {t['target']}  [{t['detail']}]"
                )
        imp = self.extra.get("imports")
        if imp:
            for d in imp.values():
                top = ", ".join(
                    f"{m['module']} {m['cumulative_us'] / 1000:.0f}"
                    for m in d["top_cumulative"][:6]
                )
                print(
                    f"\nimports ({d['command']}): {d['total_import_us'] / 1000:.0f} ms in "
                    f"{d['modules']} modules; top cumulative (ms): {top}"
                )
        for w in self.warnings:
            print(f"WARNING: {w}")
        for e in self.errors:
            print(f"ERROR in {e['section']}: {e['error']}")

    def result(self, started: str, duration: float, load_start: list[float]) -> dict[str, Any]:
        return {
            "schema": 1,
            "mode": "quick" if self.quick else "full",
            "date": started,
            "duration_s": round(duration, 1),
            "machine": self.machine_info,
            "slurm_config": getattr(self, "slurm_config", {}),
            "bytecode": getattr(self, "bytecode", {}),
            "load": {
                "start": load_start,
                "end": loadavg(),
                "sections": {k: v.get("load") for k, v in self.sections.items()},
            },
            "settings": {
                "runs": self.runs,
                "warmup": self.warmup,
                "cache_sizes": self.sizes,
                "big_image_gib": self.big_gib,
                "concurrent_pulls": self.pull_ns,
                "loop_slurmc": self.loop_slurmc,
                "loop_sbatch": self.loop_sbatch,
                "array_tasks": self.array_tasks,
            },
            "sections": self.sections,
            "floor_s": self.floor,
            "rows": self.rows,
            "targets": self.targets,
            **self.extra,
            "notes": self.notes,
            "warnings": self.warnings,
            "errors": self.errors,
            "jobs_submitted": len(self.jobs),
        }
