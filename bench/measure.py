"""What every bench section uses: timing statistics, running commands, the constants."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the in-process measurements use this checkout's slurmc

IMAGES_DIR = Path(os.environ.get("SLURMC_TEST_IMAGES", "/var/tmp/slurmc-test-images"))
TARGET_REF = "determinedai/environments:cuda-11.3-pytorch-1.10-tf-2.8-gpu-096d730"
MISSING_REF = "determinedai/environments:not-in-this-cache"
BLOB_GET = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "GET /v2/(?P<name>[^ "]+)/blobs/(?P<digest>sha256:[0-9a-f]{64})'
    r'(?:\?[^ "]*)? HTTP/[0-9.]+" (?P<status>\d{3}) '
)
IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


# ------------------------------------------------------------------ helpers


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def stats(values: Sequence[float]) -> dict[str, Any]:
    v = sorted(values)
    out: dict[str, Any] = {"n": len(v), "median": statistics.median(v) if v else None}
    out["min"] = v[0] if v else None
    out["max"] = v[-1] if v else None
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
        out.update(q1=q1, q3=q3, iqr=q3 - q1)
    else:
        out.update(q1=None, q3=None, iqr=None)
    return out


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"


class CommandFailed(RuntimeError):
    pass


def run(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    capture: bool = False,
    check: bool = True,
    timeout: float | None = 600,
) -> tuple[float, str]:
    """Run argv; return (wall seconds, stdout if captured)."""
    t = time.perf_counter()
    try:
        p = subprocess.run(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandFailed(
            f"{' '.join(map(str, argv))} timed out after {timeout:g} s: {err.strip()[-800:]}"
        ) from None
    elapsed = time.perf_counter() - t
    if check and p.returncode != 0:
        raise CommandFailed(
            f"{' '.join(map(str, argv))} exited {p.returncode}: {p.stderr.strip()[-800:]}"
        )
    return elapsed, p.stdout or ""


def exports(text: str) -> dict[str, str]:
    """`export NAME=VALUE` lines (as scripts/devcluster and scripts/registry print them)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"export ([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            value = m.group(2)
            if value[:1] in "'\"":
                value = value[1:-1]
            out[m.group(1)] = value.replace("\\ ", " ")
    return out


def job_id(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        raise CommandFailed(f"no job id in {stdout!r}")
    jid = lines[-1].strip().split(";")[0]
    if not jid.isdigit():
        raise CommandFailed(f"no job id in {stdout!r}")
    return jid


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
