"""The array section: job arrays and loops of submissions against raw sbatch."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from base import BenchBase
from measure import CommandFailed, job_id, log, run


class SectionsArray(BenchBase):
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
