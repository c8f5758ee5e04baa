"""The bench's state and bookkeeping: set-up, rows, targets, timers (bench/run.py)."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from measure import IMAGES_DIR, REPO, CommandFailed, exports, fmt_time, run, stats


class BenchBase:
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
        # set by Bench.main (bench/run.py)
        self.only: list[str] = []
        self.machine_info: dict[str, Any] = {}
        self.cleanup_paths: list[Path] = []

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
