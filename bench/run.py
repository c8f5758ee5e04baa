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
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
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


# ------------------------------------------------------------------ the bench


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.work = Path(args.workdir)
        self.runs = args.runs or (5 if self.quick else 20)
        self.warmup = 1 if self.quick else 3
        self.rows: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[dict[str, str]] = []
        self.sections: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}
        self.jobs: list[str] = []  # submitted job ids, all cancelled
        self.floor: float | None = None
        self.sizes = [10, 1000, 10000] if self.quick else [10, 1000, 100000]
        self.big_gib = 0.25 if self.quick else 2.1
        self.pull_ns = [1, 4] if self.quick else [1, 8, 32]
        self.loop_slurmc = 10 if self.quick else 100
        self.loop_sbatch = 100 if self.quick else 1000
        self.array_tasks = 100 if self.quick else 1000

    # ---- environment

    def setup(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        base = dict(os.environ)
        base.setdefault("USER", "root")
        base.pop("SLURMC_DEVCLUSTER_DIR", None)  # devcluster's own state dir stays the default
        devcluster = str(REPO / "scripts" / "devcluster")
        # A cluster that answers is used as it is (`status`); else `up` starts it. (`up` also
        # waits for the node to be idle, and a node that another user's pending job keeps
        # "planned" makes it fail after 60 s although it takes jobs.)
        try:
            run([devcluster, "status"], env=base, timeout=30)
            _, out = run([devcluster, "env"], env=base, capture=True)
        except CommandFailed:
            _, out = run([devcluster, "up"], env=base, capture=True)
        base.update(exports(out))
        if "SLURM_CONF" not in base:
            raise CommandFailed("scripts/devcluster up printed no SLURM_CONF")
        self.registry: dict[str, str] = {}
        if any(s in self.only for s in ("pulls",)):
            _, out = run([str(REPO / "scripts" / "registry"), "up"], env=base, capture=True)
            self.registry = exports(out)
        self.base_env = base
        # slurmc runs with a private site cache (devcluster.toml's images.cache is
        # ${SLURMC_DEVCLUSTER_DIR}/images), and without the user's overrides.
        env = dict(base)
        for k in ("SLURMC_SITE", "SLURMC_CACHE_DIR", "SLURMC_CATALOG", "SLURMC_BACKEND"):
            env.pop(k, None)
        env["SLURMC_DEVCLUSTER_DIR"] = str(self.work / "site")
        (self.work / "site" / "images").mkdir(parents=True, exist_ok=True)
        # Bytecode: an installed slurmc has .pyc files (pip compiles at install time), but
        # with PYTHONDONTWRITEBYTECODE=1 (set on this machine) an editable checkout without
        # __pycache__ is compiled from source on every start. slurmc is measured with a
        # bytecode cache of its own (PYTHONPYCACHEPREFIX, nothing written into the
        # checkout); `slurmc run --dry-run` is also measured with the caller's settings.
        self.env_caller = dict(env)
        self.pycache = self.work / "pycache"
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        self.bytecode: dict[str, Any] = {
            "caller_PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "caller_PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX"),
            "bench_PYTHONPYCACHEPREFIX": str(self.pycache),
        }
        self.env = env
        self.jobdir = self.work / "jobs"
        self.jobdir.mkdir(exist_ok=True)

        self.slurmc = self.args.slurmc or str(Path(sys.executable).parent / "slurmc")
        if not os.access(self.slurmc, os.X_OK):
            self.slurmc = shutil.which("slurmc") or self.slurmc
        self.python = self.interpreter_of(self.slurmc)
        for flavor in ("lumi", "plain"):
            run(
                [
                    str(REPO / "scripts" / "build-test-image"),
                    str(IMAGES_DIR / flavor),
                    "--flavor",
                    flavor,
                ],
                env=base,
            )
        self.image = str(IMAGES_DIR / "lumi" / "image.sqfs")
        self.slurm_config = self.scontrol_config()
        # fill the bytecode cache: slurmc's package, then what its commands import
        _, pkg = run(
            [self.python, "-c", "import os, slurmc; print(os.path.dirname(slurmc.__file__))"],
            env=self.env,
            capture=True,
        )
        pkg = pkg.strip()
        self.bytecode["slurmc_package"] = pkg
        self.bytecode["package_has___pycache__"] = os.path.isdir(os.path.join(pkg, "__pycache__"))
        run([self.python, "-m", "compileall", "-q", pkg], env=self.env)
        for argv in (
            ["--help"],
            ["run", "--site", "devcluster", "--dry-run", self.image, "--", "true"],
            ["cache", "ls", "--site", "devcluster"],
            ["cache", "pull", "--help"],
            ["inspect", self.image],
        ):
            run(self.slurmc_argv(*argv), env=self.env, cwd=self.jobdir, check=False)
        run([self.python, "-c", "pass"], env=self.env)
        self.setup_peers()

    def setup_peers(self) -> None:
        """The bench's own environment for the peer tools (submitit), made once in the
        work dir with this machine's Python and pip (they are not slurmc's dependencies)."""
        peers = self.work / "peers"
        self.peer_python = str(peers / "bin" / "python")
        if not os.access(self.peer_python, os.X_OK):
            run([self.python, "-m", "venv", str(peers)], env=self.base_env)
        probe = [self.peer_python, "-c", "import submitit; print(submitit.__version__)"]
        _, version = run(probe, env=self.base_env, capture=True, check=False)
        if not version.strip():
            run([self.peer_python, "-m", "pip", "install", "-q", "submitit"], env=self.base_env)
            _, version = run(probe, env=self.base_env, capture=True)
        self.peers = {"submitit": version.strip()}
        run([self.peer_python, "-c", "import submitit"], env=self.env)  # warm

    @staticmethod
    def interpreter_of(script: str) -> str:
        """The interpreter in the console script's #! line (the one slurmc runs under)."""
        try:
            with open(script, "rb") as f:
                first = f.readline().decode("utf-8", "replace").strip()
        except OSError:
            return sys.executable
        if first.startswith("#!"):
            words = first[2:].split()
            if words and os.path.basename(words[0]) == "env" and len(words) > 1:
                return shutil.which(words[1]) or sys.executable
            if words:
                return words[0]
        return sys.executable

    def scontrol_config(self) -> dict[str, str]:
        _, out = run(["scontrol", "show", "config"], env=self.base_env, capture=True)
        keep = (
            "SLURM_VERSION",
            "MaxArraySize",
            "MaxJobCount",
            "MinJobAge",
            "SchedulerParameters",
            "SchedulerType",
            "ClusterName",
        )
        conf = {}
        for line in out.splitlines():
            if "=" in line:
                k, v = (s.strip() for s in line.split("=", 1))
                if k in keep:
                    conf[k] = v
        return conf

    def machine(self) -> dict[str, Any]:
        cpu = "?"
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        mem_kb = 0
        with contextlib.suppress(OSError), open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
        info: dict[str, Any] = {
            "hostname": socket.gethostname(),
            "cpu_model": cpu,
            "cores": os.cpu_count(),
            "memory_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(),
            "os": self.os_release(),
            "python_bench": sys.version.split()[0],
            "python_slurmc": self.python,
            "slurmc": self.slurmc,
        }
        with contextlib.suppress(Exception):
            _, out = run(
                [self.python, "-c", "import sys; print(sys.version.split()[0])"], capture=True
            )
            info["python_slurmc_version"] = out.strip()
        with contextlib.suppress(Exception):
            _, out = run(["sbatch", "--version"], env=self.base_env, capture=True)
            info["slurm"] = out.strip()
        with contextlib.suppress(Exception):
            _, out = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture=True)
            _, dirty = run(
                ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                capture=True,
            )
            info["git"] = out.strip() + (" (modified)" if dirty.strip() else "")
        with contextlib.suppress(Exception):
            _, out = run(["mksquashfs", "-version"], capture=True)
            info["squashfs_tools"] = out.splitlines()[0]
        return info

    @staticmethod
    def os_release() -> str:
        with contextlib.suppress(OSError), open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
        return platform.platform()

    # ---- bookkeeping

    def row(
        self,
        rid: str,
        section: str,
        label: str,
        times: Sequence[float],
        *,
        command: str = "",
        in_process: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        r = {
            "id": rid,
            "section": section,
            "label": label,
            "command": command,
            "in_process": in_process,
            **stats(times),
            "samples": [round(t, 7) for t in times],
        }
        if extra:
            r["extra"] = extra
        self.rows.append(r)
        return r

    def get(self, rid: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["id"] == rid), None)

    def median(self, rid: str) -> float | None:
        r = self.get(rid)
        return r["median"] if r else None

    def target(
        self,
        tid: str,
        text: str,
        value: float | None,
        limit: float,
        detail: str,
        met: bool | None = None,
    ) -> None:
        if met is None:
            met = None if value is None else value <= limit
        self.targets.append(
            {
                "id": tid,
                "target": text,
                "value": value,
                "limit": limit,
                "met": met,
                "detail": detail,
            }
        )

    def min_ratio(self, prefix: str, a: object, b: object) -> str:
        """The same ratio over the minima (less sensitive to other work on the machine)."""
        ra, rb = self.get(f"{prefix}_{a}"), self.get(f"{prefix}_{b}")
        if not ra or not rb or not ra["min"]:
            return ""
        return f"minima {fmt_time(rb['min'])} / {fmt_time(ra['min'])} = {rb['min'] / ra['min']:.2f}"

    def cancel(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for i in range(0, len(ids), 200):
            subprocess.run(
                ["scancel", *ids[i : i + 200]],
                env=self.base_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def slurmc_argv(self, *args: str) -> list[str]:
        return [self.slurmc, *args]

    def timer(self, argv: list[str]) -> Callable[[], float]:
        """A function that runs argv (as slurmc runs here) and returns its wall time."""

        def timed() -> float:
            return run(argv, env=self.env, cwd=self.jobdir)[0]

        return timed

    def timer_env(self, argv: list[str], env: dict[str, str]) -> Callable[[], float]:
        """Like timer(), with another environment."""

        def timed() -> float:
            return run(argv, env=env, cwd=self.jobdir)[0]

        return timed

    def round_robin(
        self, cmds: dict[str, Callable[[], float]], runs: int, warmup: int
    ) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for i in range(warmup + runs):
            for k, fn in cmds.items():
                t = fn()
                if i >= warmup:
                    times[k].append(t)
        return times

    # ---- sections

    def sec_startup(self) -> None:
        env, cwd = self.env, self.jobdir
        site = ["--site", "devcluster"]
        held = ["--sbatch-arg=--hold"]
        script = self.jobdir / "single.sh"
        _, text = run(
            self.slurmc_argv("run", *site, "--dry-run", *held, self.image, "--", "true"),
            env=env,
            cwd=cwd,
            capture=True,
        )
        script.write_text(text)
        submitted: list[str] = []

        def floor() -> float:
            return run([self.python, "-c", "pass"], env=env, cwd=cwd)[0]

        def sbatch() -> float:
            t, out = run(["sbatch", "--parsable", str(script)], env=env, cwd=cwd, capture=True)
            submitted.append(job_id(out))
            return t

        def helps() -> float:
            return run(self.slurmc_argv("--help"), env=env, cwd=cwd)[0]

        def dry() -> float:
            return run(
                self.slurmc_argv("run", *site, "--dry-run", self.image, "--", "true"),
                env=env,
                cwd=cwd,
            )[0]

        def dry_noconda() -> float:
            return run(
                self.slurmc_argv("run", *site, "--dry-run", "--no-conda", self.image, "--", "true"),
                env=env,
                cwd=cwd,
            )[0]

        def dry_caller() -> float:
            argv = self.slurmc_argv("run", *site, "--dry-run", self.image, "--", "true")
            return run(argv, env=self.env_caller, cwd=cwd)[0]

        def submit() -> float:
            t, out = run(
                self.slurmc_argv("run", *site, "--parsable", *held, self.image, "--", "true"),
                env=env,
                cwd=cwd,
                capture=True,
            )
            submitted.append(job_id(out))
            return t

        peer_dir = self.jobdir / "submitit"
        echo = ["--", "echo", "hi"]

        def submit_echo() -> float:
            t, out = run(
                self.slurmc_argv("run", *site, "--parsable", *held, self.image, *echo),
                env=env,
                cwd=cwd,
                capture=True,
            )
            submitted.append(job_id(out))
            return t

        def submitit() -> float:
            argv = [self.peer_python, str(REPO / "bench" / "peer_submitit.py")]
            t, out = run([*argv, str(peer_dir), self.image], env=env, cwd=cwd, capture=True)
            submitted.append(job_id(out))
            return t

        cmds = {
            "floor": floor,
            "sbatch": sbatch,
            "help": helps,
            "dry_run": dry,
            "dry_run_noconda": dry_noconda,
            "run": submit,
            "run_echo": submit_echo,
            "submitit": submitit,
        }
        caller_differs = (
            self.bytecode["caller_PYTHONDONTWRITEBYTECODE"]
            or self.bytecode["caller_PYTHONPYCACHEPREFIX"]
        )
        if caller_differs:
            cmds["dry_run_caller"] = dry_caller
        try:
            times = self.round_robin(cmds, self.runs, self.warmup)
        finally:
            self.jobs += submitted
            self.cancel(submitted)
        img = "IMAGE.sqfs"
        self.row(
            "floor",
            "startup",
            "python -c pass (the floor)",
            times["floor"],
            command=f"{self.python} -c pass",
        )
        self.floor = self.median("floor")
        self.row(
            "sbatch",
            "startup",
            "sbatch --parsable (rendered script)",
            times["sbatch"],
            command="sbatch --parsable single.sh  # slurmc run --dry-run output, --hold",
        )
        self.row("help", "startup", "slurmc --help", times["help"], command="slurmc --help")
        self.row(
            "dry_run",
            "startup",
            "slurmc run --dry-run (local image)",
            times["dry_run"],
            command=f"slurmc run --site devcluster --dry-run {img} -- true",
        )
        self.row(
            "dry_run_noconda",
            "startup",
            "slurmc run --dry-run --no-conda",
            times["dry_run_noconda"],
            command=f"slurmc run --site devcluster --dry-run --no-conda {img} -- true",
        )
        self.row(
            "run",
            "startup",
            "slurmc run (submits, held)",
            times["run"],
            command=f"slurmc run --site devcluster --parsable --sbatch-arg=--hold {img} -- true",
        )
        self.row(
            "run_echo",
            "startup",
            "slurmc run IMAGE -- echo hi (submits, held)",
            times["run_echo"],
            command=f"slurmc run --site devcluster --parsable --sbatch-arg=--hold {img} -- echo hi",
        )
        self.row(
            "submitit",
            "startup",
            f"submitit {self.peers['submitit']}: the same command (submits, held)",
            times["submitit"],
            command="AutoExecutor(folder).submit(helpers.CommandFunction(['ch-run', IMAGE, "
            "'--', 'echo', 'hi'])), held; bench/peer_submitit.py",
        )
        if "dry_run_caller" in times:
            setting = ", ".join(
                f"{k.removeprefix('caller_')}={v}"
                for k, v in self.bytecode.items()
                if k.startswith("caller_") and v
            )
            self.row(
                "dry_run_caller",
                "startup",
                "slurmc run --dry-run, caller's bytecode settings",
                times["dry_run_caller"],
                command=f"{setting} slurmc run --site devcluster --dry-run {img} -- true",
            )
            self.notes.append(
                f"bytecode: this machine sets {setting}, so a checkout without __pycache__ "
                "(installed editable) is compiled from source on every start. All slurmc rows "
                "are measured with a bytecode cache (PYTHONPYCACHEPREFIX under the work dir, "
                "filled before measuring), as after a pip install; the row 'caller's bytecode "
                "settings' shows the same dry run under the caller's environment."
            )
        self.notes.append(
            f"startup: {self.runs} runs after {self.warmup} warm-up rounds, the "
            f"{len(cmds)} commands interleaved round-robin so that load drifts hit all of them "
            f"alike; IMAGE.sqfs is {self.image} (lumi test image, 21 MB)."
        )

    def sec_jobs(self) -> None:
        """`slurmc jobs` over 50 and 5,000 job records (issue 17).

        The records are copies of one real record (made by a held `slurmc run` in a
        private state dir), each with its own job id and submission time and a final
        state, as the records of a user's finished jobs are: so `slurmc jobs` asks Slurm
        nothing and the rows measure reading the records."""
        env, cwd = dict(self.env), self.jobdir
        tmpl_home = self.work / "jobs-template"
        shutil.rmtree(tmpl_home, ignore_errors=True)
        env["XDG_STATE_HOME"] = str(tmpl_home)
        held = ["--sbatch-arg=--hold"]
        _, out = run(
            [
                *self.slurmc_argv(
                    "run", "--site", "devcluster", "--parsable", *held, self.image, "--"
                ),
                "echo",
                "hi",
            ],
            env=env,
            cwd=cwd,
            capture=True,
        )
        jid = job_id(out)
        self.jobs.append(jid)
        self.cancel([jid])
        made = list((tmpl_home / "slurmc" / "jobs").glob("*.json"))
        if len(made) != 1:
            raise CommandFailed(f"expected one job record in {tmpl_home}, found {made}")
        template = json.loads(made[0].read_text())
        cluster = made[0].name.split(".", 1)[1].removesuffix(".json")
        counts = [50, 500] if self.quick else [50, 5000]
        times: dict[int, dict[str, list[float]]] = {}
        for n in counts:
            home = self.work / f"jobs-{n}"
            d = home / "slurmc" / "jobs"
            shutil.rmtree(home, ignore_errors=True)
            d.mkdir(parents=True)
            os.chmod(d, 0o700)
            for i in range(n):
                rec = dict(template)
                rec["job_id"] = str(1_000_000 + i)
                rec["submitted_at"] = time.strftime(
                    "%Y-%m-%dT%H:%M:%S+0000", time.gmtime(1.7e9 + i * 60)
                )
                rec["final"] = {
                    "state": "COMPLETED",
                    "exit_code": 0,
                    "signal": None,
                    "source": "bench",
                    "seen_at": rec["submitted_at"],
                }
                f = d / f"{rec['job_id']}.{cluster}.json"
                f.write_text(json.dumps(rec, indent=2))
                os.chmod(f, 0o600)
                # as slurmc writes them: at submission, rewritten once when the end is learnt
                when = 1.7e9 + i * 60 + 30
                os.utime(f, (when, when))
            jenv = dict(self.env, XDG_STATE_HOME=str(home))
            check = subprocess.run(
                self.slurmc_argv("jobs", "-n", "0", "--json"),
                env=jenv,
                cwd=cwd,
                capture_output=True,
                text=True,
            )
            listed = json.loads(check.stdout) if check.returncode == 0 else None
            if not isinstance(listed, list) or len(listed) != n:
                raise CommandFailed(f"slurmc jobs -n 0 --json did not list the {n} records")
            newest = self.timer_env(self.slurmc_argv("jobs"), jenv)
            every = self.timer_env(self.slurmc_argv("jobs", "-n", "0", "--json"), jenv)
            times[n] = self.round_robin(
                {"newest": newest, "all_json": every}, max(5, self.runs // 2), 1
            )
        for n in counts:
            self.row(
                f"jobs_newest_{n}",
                "jobs",
                f"slurmc jobs (20 newest), {n:,} records",
                times[n]["newest"],
                command="slurmc jobs",
                records=n,
            )
        for n in counts:
            self.row(
                f"jobs_all_{n}",
                "jobs",
                f"slurmc jobs -n 0 --json, {n:,} records",
                times[n]["all_json"],
                command="slurmc jobs -n 0 --json",
                records=n,
            )
        self.extra["jobs_counts"] = counts
        self.notes.append(
            f"jobs: {', '.join(f'{n:,}' for n in counts)} records copied from one real record "
            "(held `slurmc run`), each with its own job id, submission time (one a minute) and "
            "a final state COMPLETED, its file's mtime 30 s after its submission (as when "
            "the end is learnt), so `slurmc jobs` reads records and asks Slurm nothing; "
            "files 0600 in a 0700 directory as slurmc writes them; warm page cache."
        )

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

    def job_records(self) -> int:
        """Job records the controller holds (finished ones stay MinJobAge), as squeue -r shows."""
        _, out = run(
            ["squeue", "-h", "-r", "-t", "all", "-o", "%i"], env=self.base_env, capture=True
        )
        return len(out.split())

    def record_budget(self, needed: int, max_jobs: int) -> int:
        """Records free for this section, waiting up to 90 s for old records to expire."""
        deadline = time.monotonic() + 90
        while True:
            free = max_jobs - self.job_records() - 1000  # leave room for everyone else
            if free >= needed or time.monotonic() > deadline:
                return free
            log(f"  waiting for job records to expire (free {free}, need {needed})")
            time.sleep(10)

    def sec_array(self) -> None:
        env, cwd = self.env, self.jobdir
        site = ["--site", "devcluster"]
        held = ["--sbatch-arg=--hold"]
        n = self.array_tasks
        spec = f"0-{n - 1}"
        max_array = int(self.slurm_config.get("MaxArraySize", "1001") or 1001)
        max_jobs = int(self.slurm_config.get("MaxJobCount", "10000") or 10000)
        if max_array <= n - 1:
            raise CommandFailed(
                f"MaxArraySize={max_array} is too small for --array {spec}: add "
                f"MaxArraySize={n + 1} to scripts/devcluster's slurm.conf"
            )
        # A cancelled pending array becomes n job records, kept MinJobAge (300 s here), and
        # the controller refuses new jobs (EAGAIN, sbatch retries ~2 min) at MaxJobCount.
        trials = 1 if self.quick else 2
        loops = self.loop_slurmc + self.loop_sbatch + 4
        waited = time.perf_counter()
        free = self.record_budget(2 * trials * n + loops, max_jobs)
        waited = time.perf_counter() - waited
        if waited > 5:
            self.notes.append(
                f"array: waited {waited:.0f} s for old job records to expire before the arrays "
                "(not part of any timing)."
            )
        while trials > 1 and free < 2 * trials * n + loops:
            trials -= 1
        if free < 2 * trials * n + loops:
            raise CommandFailed(
                f"the controller holds too many job records ({max_jobs - free - 1000} of "
                f"MaxJobCount={max_jobs}) for two {n}-task arrays; wait MinJobAge or raise "
                "MaxJobCount in scripts/devcluster's slurm.conf"
            )
        array_sh = self.jobdir / "array.sh"
        single_sh = self.jobdir / "single.sh"
        _, text = run(
            self.slurmc_argv(
                "run", *site, "--dry-run", *held, "--array", spec, self.image, "--", "true"
            ),
            env=env,
            cwd=cwd,
            capture=True,
        )
        array_sh.write_text(text)
        _, text = run(
            self.slurmc_argv("run", *site, "--dry-run", *held, self.image, "--", "true"),
            env=env,
            cwd=cwd,
            capture=True,
        )
        single_sh.write_text(text)

        def one(argv: list[str]) -> float:
            t, out = run(argv, env=env, cwd=cwd, capture=True, timeout=60)
            jid = job_id(out)
            self.jobs.append(jid)
            self.cancel([jid])  # right after submission, outside the timed part
            return t

        # warm-up with single jobs (one record each), then the arrays
        one(self.slurmc_argv("run", *site, "--parsable", *held, self.image, "--", "true"))
        one(["sbatch", "--parsable", str(single_sh)])
        cmds: dict[str, Callable[[], float]] = {
            "slurmc": lambda: one(
                self.slurmc_argv(
                    "run", *site, "--parsable", *held, "--array", spec, self.image, "--", "true"
                )
            ),
            "sbatch": lambda: one(["sbatch", "--parsable", str(array_sh)]),
        }
        times = self.round_robin(cmds, trials, 0)
        self.row(
            "array_slurmc",
            "array",
            f"slurmc run --array {spec} (one sbatch)",
            times["slurmc"],
            command=f"slurmc run --site devcluster --parsable --sbatch-arg=--hold "
            f"--array {spec} IMAGE.sqfs -- true",
        )
        self.row(
            "array_sbatch",
            "array",
            f"sbatch --parsable, rendered --array {spec}",
            times["sbatch"],
            command="sbatch --parsable array.sh",
        )

        # Cancelling a 1,000-task array keeps slurmctld busy for a while (one record per
        # task); let it settle so that the loops do not time that.
        settle = time.perf_counter()
        quick_answers = 0
        while quick_answers < 2 and time.perf_counter() - settle < 30:
            t, _ = run(["squeue", "-h", "-t", "PD", "-o", "%i"], env=self.base_env, check=False)
            quick_answers = quick_answers + 1 if t < 0.05 else 0
            time.sleep(0.5)
        settle = time.perf_counter() - settle
        self.extra["array_settle_s"] = round(settle, 1)
        # The two loops interleaved (one slurmc run, then loop_sbatch/loop_slurmc raw sbatch
        # calls) so that a slow moment of the controller hits both alike.
        slurmc_argv = self.slurmc_argv("run", *site, "--parsable", *held, self.image, "--", "true")
        sbatch_argv = ["sbatch", "--parsable", str(single_sh)]
        per: list[float] = []
        per_sb: list[float] = []
        batch: list[str] = []
        k = max(1, self.loop_sbatch // self.loop_slurmc)

        def submit(argv: list[str], into: list[float]) -> None:
            nonlocal batch
            t, out = run(argv, env=env, cwd=cwd, capture=True, timeout=60)
            into.append(t)
            batch.append(job_id(out))
            if len(batch) >= 100:
                self.jobs += batch
                self.cancel(batch)  # outside the timed part
                batch = []

        t0 = time.perf_counter()
        try:
            for _ in range(self.loop_slurmc):
                submit(slurmc_argv, per)
                for _ in range(k):
                    submit(sbatch_argv, per_sb)
        finally:
            self.jobs += batch
            self.cancel(batch)
        wall = time.perf_counter() - t0

        def loop_row(rid: str, label: str, command: str, samples: list[float]) -> None:
            med = statistics.median(samples)
            slow = [round(x, 2) for x in samples if x > 10 * med]
            self.row(
                rid,
                "array",
                label,
                samples,
                command=command,
                calls=len(samples),
                loop_total_s=sum(samples),
                extrapolated_total_s=sum(samples) * n / len(samples),
                median_times_n_s=med * n,
                slow_calls_s=slow,
            )
            if slow:
                self.notes.append(
                    f"array: {len(slow)} of the {len(samples)} calls of '{label}' took more than "
                    f"10x the median ({', '.join(f'{x:g} s' for x in slow)}): the controller was "
                    "slow at that moment (other users' jobs, or the purge of old job records); "
                    "they are in the extrapolated total, median x calls leaves them out."
                )

        loop_row(
            "loop_slurmc",
            f"slurmc run, one call of a loop of {self.loop_slurmc}",
            "slurmc run --site devcluster --parsable --sbatch-arg=--hold IMAGE.sqfs -- true",
            per,
        )
        loop_row(
            "loop_sbatch",
            f"sbatch --parsable, one call of a loop of {self.loop_sbatch}",
            "sbatch --parsable single.sh",
            per_sb,
        )
        self.extra["array"] = {
            "tasks": n,
            "trials": trials,
            "array_slurmc_s": statistics.median(times["slurmc"]),
            "array_sbatch_s": statistics.median(times["sbatch"]),
            "loop_slurmc_measured_calls": len(per),
            "loop_slurmc_total_s": sum(per) * n / len(per),
            "loop_slurmc_median_times_n_s": statistics.median(per) * n,
            "loop_slurmc_extrapolated": len(per) != n,
            "loop_sbatch_measured_calls": len(per_sb),
            "loop_sbatch_total_s": sum(per_sb) * n / len(per_sb),
            "loop_sbatch_median_times_n_s": statistics.median(per_sb) * n,
            "loop_sbatch_extrapolated": len(per_sb) != n,
            "loops_wall_s": wall,
        }
        if len(per) != n:
            self.notes.append(
                f"array: the loop of {n:,} slurmc run calls was measured on {len(per)} calls "
                f"and extrapolated (x{n // len(per)}); {n:,} calls would take about "
                f"{sum(per) * n / len(per) / 60:.1f} min, too much for the time budget. The "
                f"raw sbatch calls were interleaved with them, {k} after each slurmc run."
            )
        if self.loop_sbatch != n:
            self.notes.append(
                f"array: the loop of raw sbatch calls was measured on {self.loop_sbatch} calls "
                "and extrapolated."
            )
        self.notes.append(
            f"array: {trials} submission(s) of each array after one single-job warm-up each; "
            "every job is submitted held (#SBATCH --hold in the rendered script, "
            "--sbatch-arg=--hold for slurmc) and scancel'ed right after (loops: every 100), "
            "outside the timed part. A cancelled pending array becomes one job record per task, "
            f"kept MinJobAge={self.slurm_config.get('MinJobAge')}; at MaxJobCount={max_jobs} "
            "the controller refuses new jobs (sbatch retries for about 2 minutes), so the "
            "section checks the free records first (squeue -r -t all) and takes fewer trials "
            f"if needed. MaxArraySize={max_array}."
        )

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

    # ---- main

    def main(self) -> int:
        started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        t_start = time.perf_counter()
        load_start = loadavg()
        self.cleanup_paths: list[Path] = [
            self.work / "jobs",
            self.work / "site",
            self.work / "jobs-template",
            *self.work.glob("jobs-[0-9]*"),
        ]
        all_sections = ["startup", "imports", "jobs", "resolve", "inspect", "pulls", "array"]
        self.only = self.args.only.split(",") if self.args.only else all_sections
        unknown = set(self.only) - set(all_sections)
        if unknown:
            log(
                f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(all_sections)}"
            )
            return 2
        self.machine_info: dict[str, Any] = {}
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
        "--only", help="comma-separated sections: startup,imports,jobs,resolve,inspect,pulls,array"
    )
    return Bench(ap.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
