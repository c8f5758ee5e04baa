"""The startup and jobs sections: slurmc against python, sbatch and submitit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from base import BenchBase
from measure import REPO, CommandFailed, job_id, run


class SectionsStartup(BenchBase):
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
