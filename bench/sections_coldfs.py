"""The coldfs section: what a slow shared file system costs slurmc and submitit.

On a login node, Python, its packages and the user's home are on NFS or Lustre, where
each metadata call (``stat``, ``open``) can wait for a server. This section counts the
file-system calls of one submission of each tool, then times both with every one of
those calls delayed: ``strace --inject=%file:delay_enter=D`` holds each call of the
``%file`` class (``stat``, ``newfstatat``, ``openat``, ``readlink``, ``execve``...) for D
microseconds before the kernel runs it, in the process and its children (sbatch too).
That stands in for a file system that adds latency to each metadata call (no FUSE
passthrough with a delay is installed here, and NFS cannot be served from this kind of
machine); it is harsher than NFS, whose client caches attributes: here every call
waits, local ones (/usr) included, so it is the worst case of a cold cache.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from base import BenchBase
from measure import REPO, CommandFailed, job_id, run

#: the delays per file-system call, in microseconds: none (strace's own cost, the
#: baseline of the delayed rows), a warm network file system, a cold one
DELAYS_US = (0, 200, 1000)
_CALL = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)$")
#: a call on an open descriptor: newfstatat(3, "", ..., AT_EMPTY_PATH)
_ON_FD = re.compile(r'\d+, ""')


class SectionsColdfs(BenchBase):
    def sec_coldfs(self) -> None:
        strace = shutil.which("strace")
        if not strace:
            raise CommandFailed("strace is not installed (apt-get install strace)")
        site = ["--site", "devcluster", "--parsable", "--sbatch-arg=--hold"]
        peer_dir = self.jobdir / "submitit-coldfs"
        tools = {
            "slurmc": self.slurmc_argv("run", *site, self.image, "--", "echo", "hi"),
            "submitit": [
                self.peer_python,
                str(REPO / "bench" / "peer_submitit.py"),
                str(peer_dir),
                self.image,
            ],
        }
        submitted: list[str] = []
        counts: dict[str, dict[str, int]] = {}
        trace = Path(self.work) / "coldfs.trace"
        try:
            for name, argv in tools.items():
                _, out = run(
                    [strace, "-f", "-qq", "-e", "trace=%file", "-o", str(trace), *argv],
                    env=self.env,
                    cwd=self.jobdir,
                    capture=True,
                )
                submitted.append(job_id(out))
                counts[name] = self.count_calls(trace)

            def timed(argv: list[str], delay: int | None) -> float:
                if delay is not None:
                    argv = [
                        strace,
                        "-f",
                        "-qq",
                        "-o",
                        "/dev/null",
                        "-e",
                        "trace=%file",
                        "-e",
                        f"inject=%file:delay_enter={delay}",
                        *argv,
                    ]
                t, out = run(argv, env=self.env, cwd=self.jobdir, capture=True)
                submitted.append(job_id(out))
                return t

            cmds: dict[str, Callable[[], float]] = {}
            for d in (None, *DELAYS_US):
                for name, argv in tools.items():
                    key = f"{name}_{'plain' if d is None else f'{d}us'}"
                    cmds[key] = functools.partial(timed, argv, d)
            runs = 3 if self.quick else 7
            times = self.round_robin(cmds, runs, 1)
        finally:
            self.jobs += submitted
            self.cancel(submitted)
            trace.unlink(missing_ok=True)
        for key, samples in times.items():
            name, _, delay = key.partition("_")
            label = {
                "plain": "no strace",
                "0us": "under strace, no delay",
            }.get(delay, f"every file-system call delayed {delay.removesuffix('us')} µs")
            self.row(
                f"coldfs_{key}",
                "coldfs",
                f"{'slurmc run' if name == 'slurmc' else 'submitit'} (held): {label}",
                samples,
                command=" ".join(tools[name][:1]) + " ...",
                calls=counts[name],
            )
        for name, c in counts.items():
            self.notes.append(
                f"coldfs: {name} makes {c['file_calls']} file-system calls per submission "
                f"({c['by_path']} name a path, {c['by_fd']} act on an open descriptor; "
                f"{c['stat']} stat family, {c['open']} openat), children included."
            )
        s, p = counts["slurmc"], counts["submitit"]
        self.notes.append(
            f"coldfs: file-system calls, slurmc / submitit = {s['file_calls']} / "
            f"{p['file_calls']} = {s['file_calls'] / p['file_calls']:.2f} "
            f"(by path: {s['by_path']} / {p['by_path']} = {s['by_path'] / p['by_path']:.2f})"
        )
        for d in DELAYS_US[1:]:
            ours, theirs = (
                self.median(f"coldfs_slurmc_{d}us"),
                self.median(f"coldfs_submitit_{d}us"),
            )
            if ours and theirs:
                self.target(
                    f"coldfs_{d}",
                    f"slurmc run <= 1.0 x submitit with every file-system call delayed {d} µs",
                    round(ours / theirs, 2),
                    1.0,
                    f"{ours * 1000:.0f} ms / {theirs * 1000:.0f} ms",
                )

    @staticmethod
    def count_calls(trace: Path) -> dict[str, int]:
        """File-system calls in an ``strace -f -e trace=%file`` log, by kind."""
        total = by_fd = stat = opened = 0
        for line in trace.read_text(errors="replace").splitlines():
            m = _CALL.match(line)
            if not m:
                continue
            call, args = m.group(1), m.group(2)
            total += 1
            if _ON_FD.match(args):
                by_fd += 1
            if "stat" in call:
                stat += 1
            elif call.startswith("open"):
                opened += 1
        return {
            "file_calls": total,
            "by_fd": by_fd,
            "by_path": total - by_fd,
            "stat": stat,
            "open": opened,
        }
