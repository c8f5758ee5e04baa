"""Test double for `srun` with the Pyxis SPANK plugin loaded (stdlib only).

Without any Pyxis option the real srun is exec'ed with the arguments unchanged. With
one, the double parses the command line the way srun does (getopt_long over srun's own
options plus Pyxis's, '+' mode: options end at the first non-option word or at `--`),
validates the Pyxis options the way pyxis/args.c does, and runs

    real-srun <srun options> -- python3 pyxis_exec.py SPEC_JSON <command...>

so that the job step itself starts the container (pyxis_exec.py, through ch-run).

Grammar sources:
  * srun's options: the table below was derived from Debian's Slurm 22.05.8 by probing
    /usr/bin/srun (every long name found in `srun --help`, `man srun` and the strings of
    libslurmfull.so: `--NAME=x` -> "doesn't allow an argument" = no argument, `--NAME`
    -> "requires an argument" = required, neither = optional; the same for -a..-Z);
    test_doubles.py re-checks it against the installed srun;
  * getopt_long (glibc): unique prefixes of long options are accepted, an ambiguous one
    is an error, optional arguments only as `--opt=value` / `-Ivalue`; messages
    "unrecognized option '--x'", "option '--x' is ambiguous; possibilities: ...",
    "option '--x' requires an argument", "option '--x' doesn't allow an argument",
    "invalid option -- 'y'", "option requires an argument -- 'n'", then
    'Try "srun --help" for more information', exit 255 (seen with 22.05);
  * Pyxis options and checks: NVIDIA/pyxis args.c (spank_opts[] and the spank_option_*
    callbacks: "SRC:DST[:FLAGS][,...]" with '+' between flags, sources must start with
    '.' or '/' or be "tmpfs"/"umount", "argument required", "specified multiple times",
    "--container-name NAME[:auto|create|exec|no_exec]", "--container-save" not a
    directory, both --X and --no-X given), PYXIS_CONTAINER_* environment variables
    (pyxis_args_check_environment_variables), and Slurm's plugstack.c
    ("Invalid --%s argument: %s" after a failed callback).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import _common as C

N, R, OPT = "no", "required", "optional"

SRUN_LONG = {
    "accel-bind": R,
    "account": R,
    "acctg-freq": R,
    "bb": R,
    "bbf": R,
    "bcast": OPT,
    "bcast-exclude": R,
    "begin": R,
    "chdir": R,
    "cluster-constraint": R,
    "clusters": R,
    "comment": R,
    "compress": OPT,
    "constraint": R,
    "container": R,
    "contiguous": N,
    "core-spec": R,
    "cores-per-socket": R,
    "cpu-bind": R,
    "cpu-freq": R,
    "cpu_bind": R,
    "cpus-per-gpu": R,
    "cpus-per-task": R,
    "deadline": R,
    "debugger-test": N,
    "delay-boot": R,
    "dependency": R,
    "disable-status": N,
    "distribution": R,
    "epilog": R,
    "error": R,
    "exact": N,
    "exclude": R,
    "exclusive": OPT,
    "export": R,
    "extra-node-info": R,
    "gid": R,
    "gpu-bind": R,
    "gpu-freq": R,
    "gpus": R,
    "gpus-per-node": R,
    "gpus-per-socket": R,
    "gpus-per-task": R,
    "gres": R,
    "gres-flags": R,
    "help": N,
    "het-group": R,
    "hint": R,
    "hold": N,
    "immediate": OPT,
    "input": R,
    "interactive": N,
    "job-name": R,
    "jobid": R,
    "kill-on-bad-exit": OPT,
    "label": N,
    "licenses": R,
    "mail-type": R,
    "mail-user": R,
    "mcs-label": R,
    "mem": R,
    "mem-bind": R,
    "mem-per-cpu": R,
    "mem-per-gpu": R,
    "mincpus": R,
    "mpi": R,
    "msg-timeout": R,
    "multi-prog": N,
    "network": R,
    "nice": OPT,
    "no-allocate": N,
    "no-kill": OPT,
    "nodefile": R,
    "nodelist": R,
    "nodes": R,
    "ntasks": R,
    "ntasks-per-core": R,
    "ntasks-per-gpu": R,
    "ntasks-per-node": R,
    "ntasks-per-socket": R,
    "open-mode": R,
    "output": R,
    "overcommit": N,
    "overlap": OPT,
    "oversubscribe": N,
    "pack-group": R,
    "partition": R,
    "power": R,
    "prefer": R,
    "preserve-env": N,
    "priority": R,
    "profile": R,
    "prolog": R,
    "propagate": OPT,
    "pty": N,
    "qos": R,
    "quiet": N,
    "quit-on-interrupt": N,
    "reboot": N,
    "relative": R,
    "reservation": R,
    "resv-ports": OPT,
    "send-libs": OPT,
    "signal": R,
    "slurmd-debug": R,
    "sockets-per-node": R,
    "spread-job": N,
    "switches": R,
    "task-epilog": R,
    "task-prolog": R,
    "test-only": N,
    "thread-spec": R,
    "threads": R,
    "threads-per-core": R,
    "time": R,
    "time-min": R,
    "tmp": R,
    "uid": R,
    "unbuffered": N,
    "usage": N,
    "use-min-nodes": N,
    "verbose": N,
    "version": N,
    "wait": R,
    "wckey": R,
    "whole": N,
    "x11": OPT,
}
SRUN_SHORT = {
    **{c: R for c in "bcdeimnopqrtwxABCDFGJLMNSTW"},
    **{c: N for c in "hlsuvEHOQVXZ"},
    **{c: OPT for c in "IKk"},
}
# pyxis args.c spank_opts[]: has_arg 1 -> required, 0 -> none
PYXIS_LONG = {
    "container-image": R,
    "container-mounts": R,
    "container-workdir": R,
    "container-name": R,
    "container-save": R,
    "container-mount-home": N,
    "no-container-mount-home": N,
    "container-remap-root": N,
    "no-container-remap-root": N,
    "container-entrypoint": N,
    "no-container-entrypoint": N,
    "container-entrypoint-log": N,
    "container-writable": N,
    "container-readonly": N,
    "container-env": R,
    "container-unshare": R,  # 0.24
}


def _slurm_release() -> tuple[int, int]:
    """The installed Slurm's release (22.05 on Debian 12; srun's own option table is the
    oracle, tests/doubles/test_doubles.py checks it)."""
    try:
        out = subprocess.run(
            ["/usr/bin/srun", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (22, 5)
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2])) if m else (22, 5)


# Slurm 24.11 (Debian 13) no longer has --gid, --uid and --power, and --pty takes an
# optional argument (checked against both releases; the ones between were not seen)
if _slurm_release() >= (24, 11):
    for _gone in ("gid", "uid", "power"):
        del SRUN_LONG[_gone]
    SRUN_LONG["pty"] = OPT

ALL_LONG = {**SRUN_LONG, **PYXIS_LONG}


class GetoptError(Exception):
    """A getopt_long error; `pyxis` is true when Pyxis's options take part in it (an
    unknown --container-*/--no-container-* option, or an abbreviation that only Pyxis's
    options make ambiguous), i.e. when srun without the plugin would answer otherwise."""

    def __init__(self, message: str, pyxis: bool = False):
        super().__init__(message)
        self.pyxis = pyxis


class SpankError(Exception):
    """A Pyxis option callback failed: (pyxis message, option, argument)."""


def getopt(args: list[str]) -> tuple[list[str], list[tuple[str, str | None]], list[str]]:
    """Split srun's argv like getopt_long with optstring '+...'.

    Returns (srun tokens to keep, [(pyxis option, value)], command)."""
    keep: list[str] = []
    pyxis: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return keep, pyxis, args[i + 1 :]
        if not a.startswith("-") or a == "-":
            return keep, pyxis, args[i:]
        if a.startswith("--"):
            body = a[2:]
            name, eq, value = body.partition("=")
            if name in ALL_LONG:
                full = name
            else:
                cands = [o for o in ALL_LONG if o.startswith(name)]
                if not cands:
                    raise GetoptError(
                        f"unrecognized option '--{body}'",
                        name.startswith(("container", "no-container")),
                    )
                if len(cands) > 1:
                    raise GetoptError(
                        f"option '--{body}' is ambiguous; possibilities: "
                        + " ".join(f"'--{c}'" for c in cands),
                        any(c in PYXIS_LONG for c in cands),
                    )
                full = cands[0]
            kind = ALL_LONG[full]
            tokens = [a]
            if eq:
                if kind == N:
                    raise GetoptError(
                        f"option '--{full}' doesn't allow an argument", full in PYXIS_LONG
                    )
            elif kind == R:
                if i + 1 >= len(args):
                    raise GetoptError(f"option '--{full}' requires an argument", full in PYXIS_LONG)
                value = args[i + 1]
                tokens.append(value)
                i += 1
            else:
                value = None
            if full in PYXIS_LONG:
                pyxis.append((full, value))
            else:
                keep += tokens
            i += 1
            continue
        tokens = [a]
        j = 1
        while j < len(a):
            c = a[j]
            if c not in SRUN_SHORT:
                raise GetoptError(f"invalid option -- '{c}'")
            kind = SRUN_SHORT[c]
            if kind == N:
                j += 1
                continue
            if kind == R and j + 1 == len(a):
                if i + 1 >= len(args):
                    raise GetoptError(f"option requires an argument -- '{c}'")
                tokens.append(args[i + 1])
                i += 1
            break
        keep += tokens
        i += 1
    return keep, pyxis, []


# ------------------------------------------------------------------ pyxis options


def pyxis_args(options: list[tuple[str, str | None]]) -> dict:
    """Apply the spank_option_* callbacks of pyxis/args.c in command-line order."""
    a: dict = {
        "image": None,
        "mounts": [],
        "workdir": None,
        "name": None,
        "name_flags": None,
        "save": None,
        "mount_home": -1,
        "remap_root": -1,
        "entrypoint": -1,
        "entrypoint_log": -1,
        "writable": -1,
        "env_vars": [],
        "unshare": [],
    }

    def fail(msg: str, opt: str, arg: str | None):
        raise SpankError(msg, opt, arg)

    def single(key: str, opt: str, arg: str | None):
        if not arg:
            fail(f"pyxis: --{opt}: argument required", opt, arg)
        if a[key] is not None and a[key] != arg:
            fail(f"pyxis: --{opt} specified multiple times", opt, arg)
        a[key] = arg

    def toggle(key: str, val: int, opt: str, both: str):
        if a[key] != -1 and a[key] != val:
            fail(f"pyxis: both {both} were specified", opt, None)
        a[key] = val

    for opt, arg in options:
        if opt == "container-image":
            single("image", opt, arg)
        elif opt == "container-workdir":
            single("workdir", opt, arg)
        elif opt == "container-save":
            if not arg:
                fail(f"pyxis: --{opt}: argument required", opt, arg)
            if arg.endswith("/"):
                fail("pyxis: --container-save: target is a directory", opt, arg)
            single("save", opt, arg)
        elif opt == "container-name":
            if not arg:
                fail("pyxis: --container-name: argument required", opt, arg)
            name, _, flags = arg.partition(":")
            if not name:
                fail("pyxis: --container-name: empty name", opt, arg)
            flags = flags or "auto"
            if flags not in ("auto", "create", "exec", "no_exec"):
                fail(
                    'pyxis: --container-name: flag must be "auto", "create", "exec" or "no_exec"',
                    opt,
                    arg,
                )
            if a["name"] is not None and (a["name"], a["name_flags"]) != (name, flags):
                fail("pyxis: --container-name specified multiple times", opt, arg)
            a["name"], a["name_flags"] = name, flags
        elif opt == "container-mounts":
            if not arg:
                fail("pyxis: --container-mounts: argument required", opt, arg)
            for entry in arg.split(","):
                src, sep, rest = entry.partition(":")
                if not src:
                    fail(f"pyxis: --container-mounts: invalid format: {entry}", opt, arg)
                dst, flags = src, None
                if sep:
                    dst, _, flags = rest.partition(":")
                    if not dst:
                        fail(f"pyxis: --container-mounts: invalid format: {entry}", opt, arg)
                    flags = flags.replace("+", ",") or None
                if src[0] in "./":
                    default = "x-create=auto,rbind"
                elif src == "tmpfs":
                    default = "x-create=dir"
                elif src == "umount":
                    default = "x-detach"
                else:
                    fail(
                        "pyxis: mount source must be a relative path, an absolute path, "
                        '"tmpfs" or "umount"\nsrun: error: pyxis: could not add mount '
                        f"entry: {src}:{dst}",
                        opt,
                        arg,
                    )
                if dst[0] not in "./":
                    fail(
                        "pyxis: mount target must be a relative path or an absolute path"
                        f"\nsrun: error: pyxis: could not add mount entry: {src}:{dst}",
                        opt,
                        arg,
                    )
                m = {
                    "source": src,
                    "target": dst,
                    "flags": default + ("," + flags if flags else ""),
                }
                if m not in a["mounts"]:
                    a["mounts"].append(m)
        elif opt == "container-env":
            if not arg:
                fail("pyxis: --container-env: argument required", opt, arg)
            for name in arg.split(","):
                if not name:
                    fail(f"pyxis: --container-env: invalid format: {arg}", opt, arg)
                if name not in a["env_vars"]:
                    a["env_vars"].append(name)
        elif opt == "container-unshare":  # args.c spank_option_container_unshare (0.24)
            if not arg:
                fail("pyxis: --container-unshare: argument required", opt, arg)
            for ns in arg.split(","):
                if not ns:
                    fail("pyxis: --container-unshare: empty namespace argument", opt, arg)
                if ns not in ("net", "ipc", "uts"):
                    fail(f"pyxis: --container-unshare: unknown namespace '{ns}'", opt, arg)
                if ns not in a["unshare"]:
                    a["unshare"].append(ns)
        elif opt in ("container-mount-home", "no-container-mount-home"):
            toggle(
                "mount_home",
                int(opt == "container-mount-home"),
                opt,
                "--container-mount-home and --no-container-mount-home",
            )
        elif opt in ("container-remap-root", "no-container-remap-root"):
            toggle(
                "remap_root",
                int(opt == "container-remap-root"),
                opt,
                "--container-remap-root and --no-container-remap-root",
            )
        elif opt in ("container-entrypoint", "no-container-entrypoint"):
            toggle(
                "entrypoint",
                int(opt == "container-entrypoint"),
                opt,
                "--container-entrypoint and --no-container-entrypoint",
            )
        elif opt == "container-entrypoint-log":
            a["entrypoint_log"] = 1
        elif opt in ("container-writable", "container-readonly"):
            toggle(
                "writable",
                int(opt == "container-writable"),
                opt,
                "--container-writable and --container-readonly",
            )
    return a


ENV_OPTIONS = [  # pyxis_args_check_environment_variables: used when not on the command line
    ("PYXIS_CONTAINER_IMAGE", "container-image", "image"),
    ("PYXIS_CONTAINER_MOUNTS", "container-mounts", "mounts"),
    ("PYXIS_CONTAINER_WORKDIR", "container-workdir", "workdir"),
    ("PYXIS_CONTAINER_NAME", "container-name", "name"),
    ("PYXIS_CONTAINER_SAVE", "container-save", "save"),
    ("PYXIS_CONTAINER_ENV", "container-env", "env_vars"),
    ("PYXIS_CONTAINER_UNSHARE", "container-unshare", "unshare"),
]
ENV_BOOLS = [
    ("PYXIS_CONTAINER_MOUNT_HOME", "mount_home", False),
    ("PYXIS_CONTAINER_REMAP_ROOT", "remap_root", False),
    ("PYXIS_CONTAINER_ENTRYPOINT", "entrypoint", False),
    ("PYXIS_CONTAINER_ENTRYPOINT_LOG", "entrypoint_log", False),
    ("PYXIS_CONTAINER_WRITABLE", "writable", False),
    ("PYXIS_CONTAINER_READONLY", "writable", True),
]


def parse_bool(s: str) -> int:
    if s in ("1", "true", "yes", "y"):
        return 1
    if s in ("0", "false", "no", "n"):
        return 0
    return -1


def apply_env(args: dict, options: list[tuple[str, str | None]]) -> dict:
    extra = []
    for var, opt, key in ENV_OPTIONS:
        v = os.environ.get(var)
        if v is not None and not args[key]:
            extra.append((opt, v))
    merged = pyxis_args(options + extra) if extra else args
    for var, key, invert in ENV_BOOLS:
        v = os.environ.get(var)
        if v is not None and merged[key] == -1 and parse_bool(v) >= 0:
            merged[key] = 1 - parse_bool(v) if invert else parse_bool(v)
    return merged


# --------------------------------------------------------------------------- main


def real_srun() -> str:
    """The real srun: the first `srun` on PATH that is not this double, else /usr/bin."""
    me = os.path.realpath(os.path.join(C.BIN_DIR, "srun"))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        cand = os.path.join(d or ".", "srun")
        if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
            continue
        real = os.path.realpath(cand)
        if (
            real == me
            or os.path.realpath(d or ".") == os.path.realpath(C.BIN_DIR)
            or real.startswith(C.DOUBLES_DIR + os.sep)
        ):
            continue
        return cand
    return "/usr/bin/srun"


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except Exception as e:  # one line, no traceback (SLURMC_DOUBLE_DEBUG=1 shows it)
        return C.internal_error("srun", e)


def _main(argv: list[str]) -> int:
    C.log_invocation("srun", argv[1:])
    prog = os.path.basename(argv[0]) or "srun"
    args = argv[1:]
    srun = real_srun()
    try:
        keep, options, command = getopt(args)
    except GetoptError as e:
        if e.pyxis:
            print(f"{prog}: {e}", file=sys.stderr)
            print('Try "srun --help" for more information', file=sys.stderr)
            return 255
        os.execv(srun, ["srun", *args])  # not a Pyxis matter: let srun say it
    env_set = any(os.environ.get(v) is not None for v, _, _ in ENV_OPTIONS)
    if not options and not env_set:
        os.execv(srun, ["srun", *args])
    try:
        pa = apply_env(pyxis_args(options), options)
    except SpankError as e:
        msg, opt, arg = e.args
        for line in msg.split("\n"):
            if not line.startswith("srun: "):
                line = "srun: error: " + line
            print(line, file=sys.stderr)
        print(
            f"srun: error: Invalid --{opt} argument: {arg if arg is not None else '(null)'}",
            file=sys.stderr,
        )
        return 255
    if pa["image"] is None and pa["name"] is None:
        for key, what in (
            ("mounts", "--container-mounts"),
            ("workdir", "--container-workdir"),
            ("save", "--container-save"),
        ):
            if pa[key]:
                print(
                    f"srun: error: pyxis: ignoring {what} because neither --container-image "
                    "nor --container-name is set",
                    file=sys.stderr,
                )
        os.execv(srun, ["srun", *keep, *(["--", *command] if command else [])])
    if not command:
        os.execv(srun, ["srun", *keep])  # srun: fatal: No command given to execute.
    spec = dict(pa)
    spec["ch_run"] = C.find_tool("ch-run")
    spec["python"] = sys.executable
    spec["submit_cwd"] = os.getcwd()
    helper = os.path.join(C.DOUBLES_DIR, "pyxis_exec.py")
    os.execv(srun, ["srun", *keep, "--", sys.executable, helper, json.dumps(spec), *command])
    return 255
