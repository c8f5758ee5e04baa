#!/usr/bin/env python3
"""Turn bench/run.py's JSON into Markdown tables for the README.

    bench/table.py [RESULTS.json] [--out bench/RESULTS.md] [--stdout]

Defaults: reads bench/results.json, writes bench/RESULTS.md. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def t(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"


def ms(us: int) -> str:
    return f"{us / 1000:.1f}"


def md_table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def render(res: dict[str, Any]) -> str:
    m = res.get("machine", {})
    load = res.get("load", {})
    floor = res.get("floor_s")
    lines = [
        "# slurmc benchmark results",
        "",
        f"`bench/run.py{' --quick' if res.get('mode') == 'quick' else ''}`, {res.get('date')}, "
        f"{res.get('mode')} run, {res.get('duration_s', 0):.0f} s in all.",
        "",
        f"Machine: {m.get('cpu_model')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; "
        f"{m.get('os')}, kernel {m.get('kernel')}; Python {m.get('python_slurmc_version')} "
        f"(`{m.get('python_slurmc')}`); {m.get('slurm')}; {m.get('squashfs_tools')}; "
        f"slurmc at git {m.get('git')}. Load average (1/5/15 min) at the start "
        f"{load.get('start')}, at the end {load.get('end')}.",
        "",
    ]
    targets = res.get("targets", [])
    if targets:
        lines += ["## Targets (issue #6), each a ratio measured in this run", ""]
        rows = []
        for tg in targets:
            mark = {True: "met", False: "**missed**", None: "?"}[tg["met"]]
            val = "-" if tg["value"] is None else f"{tg['value']:.2f}"
            rows.append([tg["target"], val, f"{tg['limit']:g}", mark, tg["detail"]])
        lines += md_table(["target", "ratio", "limit", "result", "numbers"], rows, "lrrll")
        lines.append("")

    lines += [
        "## Timings",
        "",
        "Median, interquartile range and minimum of n runs (wall time, warm caches); "
        "x floor = median / median of `python -c pass` (same interpreter as slurmc). "
        "In-process rows time a Python function inside one process (no ratio).",
        "",
    ]
    rows = []
    section = None
    for r in res.get("rows", []):
        if r["section"] != section:
            section = r["section"]
            rows.append([f"*{section}*", "", "", "", "", ""])
        ratio = "-" if r["in_process"] or not floor else f"{r['median'] / floor:.1f}"
        rows.append([r["label"], str(r["n"]), t(r["median"]), t(r["iqr"]), t(r["min"]), ratio])
    lines += md_table(["measurement", "n", "median", "IQR", "min", "x floor"], rows)
    lines.append("")

    pulls = [r for r in res.get("rows", []) if r["section"] == "pulls"]
    if pulls:
        lines += ["## Concurrent pulls of one missing image", ""]
        rows = []
        for r in pulls:
            ex = r["extra"]
            puller = [x for x in ex.get("puller_exit_s", []) if x is not None]
            lag = [x for x in ex.get("last_waiter_after_puller_s", []) if x is not None]
            rows.append(
                [
                    str(ex["concurrency"]),
                    str(ex["trials"]),
                    t(r["median"]),
                    f"{ex['ratio_to_one_pull']:.2f}",
                    ", ".join(map(str, ex["blob_gets"])),
                    str(ex["distinct_blobs"]),
                    ", ".join(f"{x:g}" for x in ex["transfers"]),
                    str(ex["failed"]),
                    ", ".join(f"{x:.2f}" for x in puller) or "-",
                    ", ".join(f"{x:.2f}" for x in lag) or "-",
                ]
            )
        lines += md_table(
            [
                "processes",
                "trials",
                "wall (median)",
                "x one pull",
                "blob GETs per trial",
                "blobs in image",
                "transfers",
                "failed",
                "puller exits at (s)",
                "last waiter exits after it (s)",
            ],
            rows,
        )
        lines += [
            "",
            "Wall time: from starting the first process to the last exit. The "
            "puller is the one process that pulled; the others waited on the lock.",
        ]
        lines.append("")

    arr = res.get("array")
    if arr:
        n = arr["tasks"]
        lines += [f"## {n:,} tasks", ""]

        def how(k: str) -> str:
            calls = arr[f"{k}_measured_calls"]
            med = arr.get(f"{k}_median_times_n_s")
            text = f"extrapolated from {calls} calls" if arr[f"{k}_extrapolated"] else "measured"
            return text + (f"; median x {n:,} = {t(med)}" if med is not None else "")

        rows = [
            [f"one `slurmc run --array 0-{n - 1}`", t(arr["array_slurmc_s"]), "measured"],
            ["one raw `sbatch` of the rendered array script", t(arr["array_sbatch_s"]), "measured"],
            [f"{n:,} x `slurmc run`", t(arr["loop_slurmc_total_s"]), how("loop_slurmc")],
            [f"{n:,} x raw `sbatch`", t(arr["loop_sbatch_total_s"]), how("loop_sbatch")],
        ]
        lines += md_table(["way", "total", "how"], rows, "lrl")
        lines.append("")

    imports = res.get("imports")
    if imports:
        lines += ["## Start-up imports (`python -X importtime`, median of 3)", ""]
        for d in imports.values():
            lines += [
                f"`{d['command']}`: {ms(d['total_import_us'])} ms of imports in "
                f"{d['modules']} modules.",
                "",
            ]
            rows = [
                [m["module"], ms(m["cumulative_us"]), ms(m["self_us"])]
                for m in d["top_cumulative"][:10]
            ]
            lines += md_table(["top-level import", "cumulative ms", "self ms"], rows)
            lines.append("")
            pk = d.get("by_package_self_us", {})
            if pk:
                lines += [
                    "Self time by top-level package (ms): "
                    + ", ".join(f"{k} {ms(v)}" for k, v in list(pk.items())[:10])
                    + ".",
                    "",
                ]

    for title, key in (("Notes", "notes"), ("Warnings", "warnings")):
        items = res.get(key) or []
        if items:
            lines += [f"## {title}", ""] + [f"- {x}" for x in items] + [""]
    errs = res.get("errors") or []
    if errs:
        lines += ["## Errors", ""] + [f"- {e['section']}: {e['error']}" for e in errs] + [""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("results", nargs="?", default=str(HERE / "results.json"))
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--stdout", action="store_true", help="print instead of writing --out")
    args = ap.parse_args()
    text = render(json.loads(Path(args.results).read_text()))
    if args.stdout:
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
