"""sbatch's options, and how sbatch's getopt_long reads one ``--sbatch-arg``.

The table is sbatch 22.05's: the entries of ``common_options[]`` in Slurm's
src/common/slurm_opt.c (tag slurm-22-05-8-1) that sbatch accepts (those with
``set_func`` or ``set_func_sbatch``), with ``has_arg`` (N: none, R: required,
O: optional), the short option if any, and the ``val`` getopt returns. Two
names with the same ``val`` are one option (``--tasks-per-node`` is
``--ntasks-per-node``), which matters for abbreviations as in glibc.

A ``--sbatch-arg`` is ONE command-line argument as sbatch would see it: a long
option, abbreviated or not (``--comm=x`` is ``--comment=x``; ``--co`` is
ambiguous), with its value after ``=``; or a cluster of short options
(``-Hv``, ``-Jname``). Each becomes ``(--full-name, value)`` so slurmc knows
what the job asks for (its ``--comment``, ``--exclusive``) whatever the
spelling. Long options this table does not know (a newer Slurm's) pass as
they are; they cannot be abbreviations of known ones.
"""

from __future__ import annotations

import re

from slurmc.errors import ValidationError

#: (long name, has_arg, short, val): sbatch 22.05 (see the module docs)
OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("account", "R", "A", "A"),
    ("acctg-freq", "R", "", "LONG_OPT_ACCTG_FREQ"),
    ("array", "R", "a", "a"),
    ("batch", "R", "", "LONG_OPT_BATCH"),
    ("begin", "R", "b", "b"),
    ("bb", "R", "", "LONG_OPT_BURST_BUFFER_SPEC"),
    ("bbf", "R", "", "LONG_OPT_BURST_BUFFER_FILE"),
    ("cluster-constraint", "R", "", "LONG_OPT_CLUSTER_CONSTRAINT"),
    ("chdir", "R", "D", "D"),
    ("cluster", "R", "", "LONG_OPT_CLUSTER"),
    ("clusters", "R", "M", "M"),
    ("comment", "R", "", "LONG_OPT_COMMENT"),
    ("container", "R", "", "LONG_OPT_CONTAINER"),
    ("context", "R", "", "LONG_OPT_CONTEXT"),
    ("contiguous", "N", "", "LONG_OPT_CONTIGUOUS"),
    ("constraint", "R", "C", "C"),
    ("core-spec", "R", "S", "S"),
    ("cores-per-socket", "R", "", "LONG_OPT_CORESPERSOCKET"),
    ("cpu-freq", "R", "", "LONG_OPT_CPU_FREQ"),
    ("cpus-per-gpu", "R", "", "LONG_OPT_CPUS_PER_GPU"),
    ("cpus-per-task", "R", "c", "c"),
    ("deadline", "R", "", "LONG_OPT_DEADLINE"),
    ("delay-boot", "R", "", "LONG_OPT_DELAY_BOOT"),
    ("dependency", "R", "d", "d"),
    ("distribution", "R", "m", "m"),
    ("error", "R", "e", "e"),
    ("exclude", "R", "x", "x"),
    ("exclusive", "O", "", "LONG_OPT_EXCLUSIVE"),
    ("export", "R", "", "LONG_OPT_EXPORT"),
    ("export-file", "R", "", "LONG_OPT_EXPORT_FILE"),
    ("extra-node-info", "R", "B", "B"),
    ("get-user-env", "O", "", "LONG_OPT_GET_USER_ENV"),
    ("gid", "R", "", "LONG_OPT_GID"),
    ("gpu-bind", "R", "", "LONG_OPT_GPU_BIND"),
    ("gpu-freq", "R", "", "LONG_OPT_GPU_FREQ"),
    ("gpus", "R", "G", "G"),
    ("gpus-per-node", "R", "", "LONG_OPT_GPUS_PER_NODE"),
    ("gpus-per-socket", "R", "", "LONG_OPT_GPUS_PER_SOCKET"),
    ("gpus-per-task", "R", "", "LONG_OPT_GPUS_PER_TASK"),
    ("gres", "R", "", "LONG_OPT_GRES"),
    ("gres-flags", "R", "", "LONG_OPT_GRES_FLAGS"),
    ("help", "N", "h", "h"),
    ("hint", "R", "", "LONG_OPT_HINT"),
    ("hold", "N", "H", "H"),
    ("ignore-pbs", "N", "", "LONG_OPT_IGNORE_PBS"),
    ("input", "R", "i", "i"),
    ("job-name", "R", "J", "J"),
    ("kill-on-invalid-dep", "R", "", "LONG_OPT_KILL_INV_DEP"),
    ("licenses", "R", "L", "L"),
    ("mail-type", "R", "", "LONG_OPT_MAIL_TYPE"),
    ("mail-user", "R", "", "LONG_OPT_MAIL_USER"),
    ("mcs-label", "R", "", "LONG_OPT_MCS_LABEL"),
    ("mem", "R", "", "LONG_OPT_MEM"),
    ("mem-bind", "R", "", "LONG_OPT_MEM_BIND"),
    ("mem-per-cpu", "R", "", "LONG_OPT_MEM_PER_CPU"),
    ("mem-per-gpu", "R", "", "LONG_OPT_MEM_PER_GPU"),
    ("mincpus", "R", "", "LONG_OPT_MINCPUS"),
    ("network", "R", "", "LONG_OPT_NETWORK"),
    ("nice", "O", "", "LONG_OPT_NICE"),
    ("no-kill", "O", "k", "k"),
    ("no-requeue", "N", "", "LONG_OPT_NO_REQUEUE"),
    ("nodefile", "R", "F", "F"),
    ("nodelist", "R", "w", "w"),
    ("nodes", "R", "N", "N"),
    ("ntasks", "R", "n", "n"),
    ("ntasks-per-core", "R", "", "LONG_OPT_NTASKSPERCORE"),
    ("ntasks-per-gpu", "R", "", "LONG_OPT_NTASKSPERGPU"),
    ("ntasks-per-node", "R", "", "LONG_OPT_NTASKSPERNODE"),
    ("ntasks-per-socket", "R", "", "LONG_OPT_NTASKSPERSOCKET"),
    ("ntasks-per-tres", "R", "", "LONG_OPT_NTASKSPERTRES"),
    ("open-mode", "R", "", "LONG_OPT_OPEN_MODE"),
    ("output", "R", "o", "o"),
    ("overcommit", "N", "O", "O"),
    ("oversubscribe", "N", "s", "s"),
    ("parsable", "N", "", "LONG_OPT_PARSABLE"),
    ("partition", "R", "p", "p"),
    ("power", "R", "", "LONG_OPT_POWER"),
    ("prefer", "R", "", "LONG_OPT_PREFER"),
    ("priority", "R", "", "LONG_OPT_PRIORITY"),
    ("profile", "R", "", "LONG_OPT_PROFILE"),
    ("propagate", "O", "", "LONG_OPT_PROPAGATE"),
    ("qos", "R", "q", "q"),
    ("quiet", "N", "Q", "Q"),
    ("reboot", "N", "", "LONG_OPT_REBOOT"),
    ("requeue", "N", "", "LONG_OPT_REQUEUE"),
    ("reservation", "R", "", "LONG_OPT_RESERVATION"),
    ("signal", "R", "", "LONG_OPT_SIGNAL"),
    ("sockets-per-node", "R", "", "LONG_OPT_SOCKETSPERNODE"),
    ("spread-job", "N", "", "LONG_OPT_SPREAD_JOB"),
    ("switches", "R", "", "LONG_OPT_SWITCHES"),
    ("tasks-per-node", "R", "", "LONG_OPT_NTASKSPERNODE"),
    ("test-only", "N", "", "LONG_OPT_TEST_ONLY"),
    ("thread-spec", "R", "", "LONG_OPT_THREAD_SPEC"),
    ("threads-per-core", "R", "", "LONG_OPT_THREADSPERCORE"),
    ("time", "R", "t", "t"),
    ("time-min", "R", "", "LONG_OPT_TIME_MIN"),
    ("tmp", "R", "", "LONG_OPT_TMP"),
    ("uid", "R", "", "LONG_OPT_UID"),
    ("use-min-nodes", "N", "", "LONG_OPT_USE_MIN_NODES"),
    ("verbose", "N", "v", "v"),
    ("version", "N", "V", "V"),
    ("usage", "N", "", "LONG_OPT_USAGE"),
    ("wait", "N", "W", "W"),
    ("wait-all-nodes", "R", "", "LONG_OPT_WAIT_ALL_NODES"),
    ("wckey", "R", "", "LONG_OPT_WCKEY"),
    ("wrap", "R", "", "LONG_OPT_WRAP"),
)

_BY_NAME = {o[0]: o for o in OPTIONS}
_BY_SHORT = {o[2]: o for o in OPTIONS if o[2]}
_LONG = re.compile(r"--([A-Za-z0-9][A-Za-z0-9_-]*)(?:=(.*))?\Z", re.ASCII | re.DOTALL)


def _resolve(word: str, arg: str) -> tuple[str, str, str, str] | None:
    """glibc getopt_long: an exact name, else the one option all prefix matches are."""
    if word in _BY_NAME:
        return _BY_NAME[word]
    matches = [o for o in OPTIONS if o[0].startswith(word)]
    if not matches:
        return None
    if len({(o[1], o[3]) for o in matches}) > 1:
        names = ", ".join("--" + o[0] for o in matches)
        raise ValidationError(
            f"--sbatch-arg: {arg!r} is ambiguous for sbatch (it could be {names}); "
            "write the option in full"
        )
    return matches[0]


def parse(arg: str) -> list[tuple[str, str | None]]:
    """The options one ``--sbatch-arg`` holds, as ``(--long-name, value or None)``."""
    m = _LONG.match(arg)
    if m:
        word, value = m.group(1), m.group(2)
        found = _resolve(word, arg)
        if found is None:
            return [("--" + word, value)]  # not sbatch 22.05's: passed as it is
        name, has_arg, _, _ = found
        if has_arg == "N" and value is not None:
            raise ValidationError(
                f"--sbatch-arg: {arg!r}: sbatch's --{name} takes no value; one option per "
                "--sbatch-arg"
            )
        if has_arg == "R" and value is None:
            raise ValidationError(
                f"--sbatch-arg: {arg!r}: sbatch's --{name} needs a value; write it as "
                f"--{name}=VALUE (one option per --sbatch-arg)"
            )
        return [("--" + name, value)]
    if arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
        return _shorts(arg)
    raise ValidationError(
        f"--sbatch-arg: {arg!r} is not one sbatch option; write it as --option=value, "
        "one option per --sbatch-arg"
    )


def _shorts(arg: str) -> list[tuple[str, str | None]]:
    """``-Hv`` is two flags; ``-Jname`` is --job-name=name (getopt: the rest is the value)."""
    out: list[tuple[str, str | None]] = []
    i = 1
    while i < len(arg):
        found = _BY_SHORT.get(arg[i])
        if found is None:
            raise ValidationError(
                f"--sbatch-arg: {arg!r}: -{arg[i]} is not an sbatch option; "
                "write options in their long form, --option=value"
            )
        name, has_arg, _, _ = found
        rest = arg[i + 1 :]
        if has_arg == "N":
            out.append(("--" + name, None))
            i += 1
            continue
        if has_arg == "R" and not rest:
            raise ValidationError(
                f"--sbatch-arg: {arg!r}: -{arg[i]} needs its value in the same argument; "
                f"write it as --{name}=VALUE"
            )
        out.append(("--" + name, rest or None))
        break
    return out
