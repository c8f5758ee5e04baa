"""Test double for `singularity` (SingularityCE) and `apptainer` (stdlib only).

Behaviour follows the program name it is started under (bin/singularity, bin/apptainer).
Subcommands: version / --version, exec, run, pull. Containers run through Charliecloud's
ch-run; see README.md for what is and is not emulated.

Grammar sources (stored copies of the upstream repositories):
  * flags of exec/run: apptainer/apptainer cmd/internal/cli/action_flags.go and
    sylabs/singularity cmd/internal/cli/action_flags.go (name, shorthand, type, EnvKeys);
  * flags of pull: apptainer/apptainer cmd/internal/cli/pull.go (+ the common flags);
  * flag syntax: spf13/pflag as used by cobra (`--flag=v`, `--flag v`, `-B v`, `-Bv`,
    grouped bool shorthands `-eC`, `--bool=false`, `--` ends flags); flags stop at the
    first positional argument (SetInterspersed(false) on the action commands);
  * --env is a pflag stringToString: "K=V[,K2=V2]" (csv when it holds more than one
    "="); a pair without "=" fails with `X must be formatted as key=value`;
  * bind specs "src[:dst[:opts]]", comma-separated, options ro, rw, image-src=PATH, id=N:
    ported tokenizers of apptainer pkg/runtime/engine/apptainer/config/bind.go
    (apptainer: also "\\," / "\\:" escapes, "bad bind syntax") and of
    sylabs/singularity pkg/util/bind/bind.go (singularity: "wrong bind syntax");
    both say `while getting bind path: X is not a valid bind option`;
  * error texts: cobra error path in cmd/internal/cli/apptainer.go / singularity.go
    (`Error for command "exec": unknown flag: --x`, exit 1); sylog.Fatalf (`FATAL:   `,
    exit 255) for image and mount errors, with the messages seen in the field
    ("could not open image X: failed to retrieve path for X: lstat X: no such file or
    directory"; "container creation failed: mount hook function failure: mount S->D
    error: while mounting S: mount source S doesn't exist");
  * environment: internal/pkg/util/env (AlwaysOmitKeys HOME, PATH, LD_LIBRARY_PATH;
    AlwaysPassKeys TERM and the proxies under --cleanenv; default PATH; PREFIXENV_ vars).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import sys
import tempfile

import _common as C

VERSIONS = {
    "singularity": ("singularity-ce", "4.1.0-slurmc-double"),
    "apptainer": ("apptainer", "1.3.0-slurmc-double"),
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ALWAYS_PASS = {
    "TERM",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
}
# cwd is not bound when it is one of these (or below the ones marked as trees).
NO_CWD_BIND = {
    "/",
    "/etc",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/usr",
    "/dev",
    "/proc",
    "/sys",
    "/var",
    "/boot",
    "/run",
}
NO_CWD_BIND_TREES = ("/usr", "/proc", "/sys", "/dev", "/etc", "/boot", "/bin", "/sbin")
NO_CWD_BIND |= {"/opt", "/mnt"}  # never bound as the working directory (both tools)


class Fatal(Exception):
    """sylog.Fatalf: 'FATAL:   msg', exit 255."""


class CobraError(Exception):
    """An argument error reported by cobra/pflag: exit 1."""


# ---------------------------------------------------------------------------- flags

B, S, A, M, INT = "bool", "string", "array", "map", "int"  # flag value types

GLOBAL_FLAGS = {  # persistent flags of the root command, valid on every subcommand
    "debug": ("d", B),
    "quiet": ("q", B),
    "silent": ("s", B),
    "verbose": ("v", B),
    "nocolor": ("", B),
    "config": ("", S),
    "build-config": ("", B),
}

ACTION_FLAGS = {
    # name: (shorthand, type); action_flags.go of both projects
    "add-caps": ("", S),
    "allow-setuid": ("", B),
    "app": ("", S),
    "apply-cgroups": ("", S),
    "bind": ("B", A),
    "blkio-weight": ("", INT),
    "blkio-weight-device": ("", A),
    "cleanenv": ("e", B),
    "compat": ("", B),
    "contain": ("c", B),
    "containall": ("C", B),
    "containlibs": ("", A),
    "cpu-shares": ("", INT),
    "cpus": ("", S),
    "cpuset-cpus": ("", S),
    "cpuset-mems": ("", S),
    "cwd": ("", S),
    "disable-cache": ("", B),
    "dmtcp-launch": ("", S),
    "dmtcp-restart": ("", S),
    "dns": ("", S),
    "docker-host": ("", S),
    "docker-login": ("", B),
    "docker-password": ("", S),
    "docker-username": ("", S),
    "drop-caps": ("", S),
    "env": ("", M),
    "env-file": ("", S),
    "fakeroot": ("f", B),
    "fusemount": ("", A),
    "home": ("H", S),
    "hostname": ("", S),
    "ignore-fakeroot-command": ("", B),
    "ignore-subuid": ("", B),
    "ignore-userns": ("", B),
    "ipc": ("i", B),
    "keep-privs": ("", B),
    "memory": ("", S),
    "memory-reservation": ("", S),
    "memory-swap": ("", S),
    "mount": ("", A),
    "net": ("n", B),
    "network": ("", S),
    "network-args": ("", A),
    "no-eval": ("", B),
    "no-home": ("", B),
    "no-https": ("", B),
    "nohttps": ("", B),
    "no-init": ("", B),
    "no-mount": ("", A),
    "no-nv": ("", B),
    "no-privs": ("", B),
    "no-rocm": ("", B),
    "no-umask": ("", B),
    "nv": ("", B),
    "nvccli": ("", B),
    "oom-kill-disable": ("", B),
    "overlay": ("o", A),
    "passphrase": ("", B),
    "pem-path": ("", S),
    "pid": ("p", B),
    "pids-limit": ("", INT),
    "pwd": ("", S),
    "rocm": ("", B),
    "scratch": ("S", A),
    "security": ("", A),
    "sharens": ("", B),
    "tmpdir": ("", S),
    "underlay": ("", B),
    "unsquash": ("", B),
    "userns": ("u", B),
    "uts": ("", B),
    "vm": ("", B),
    "vm-cpu": ("", S),
    "vm-err": ("", B),
    "vm-ip": ("", S),
    "vm-ram": ("", S),
    "workdir": ("W", S),
    "writable": ("w", B),
    "writable-tmpfs": ("", B),
    "authfile": ("", S),
    # SingularityCE 4 additions
    "oci": ("", B),
    "no-oci": ("", B),
    "keep-layers": ("", B),
    "no-compat": ("", B),
    "no-setgroups": ("", B),
    "sif-fuse": ("", B),
    "device": ("", A),
    "cdi-dirs": ("", A),
    "arch": ("", S),
    "platform": ("", S),
}

PULL_FLAGS = {  # pull.go + common flags
    "force": ("F", B),
    "library": ("", S),
    "name": ("", S),
    "no-https": ("", B),
    "nohttps": ("", B),
    "tmpdir": ("", S),
    "disable-cache": ("", B),
    "dir": ("", S),
    "docker-host": ("", S),
    "docker-username": ("", S),
    "docker-password": ("", S),
    "docker-login": ("", B),
    "no-cleanup": ("", B),
    "allow-unsigned": ("U", B),
    "allow-unauthenticated": ("", B),
    "arch": ("", S),
    "arch-variant": ("", S),
    "authfile": ("", S),
    "sandbox": ("", B),
    "platform": ("", S),
    "oci": ("", B),
    "keep-layers": ("", B),
}

ENV_KEYS = {  # flag -> EnvKeys (prefixed APPTAINER_/SINGULARITY_) that the double reads
    "bind": ("BIND", "BINDPATH"),
    "cleanenv": ("CLEANENV",),
    "contain": ("CONTAIN",),
    "containall": ("CONTAINALL",),
    "nv": ("NV",),
    "rocm": ("ROCM",),
    "no-home": ("NO_HOME",),
    "env-file": ("ENV_FILE",),
    "writable-tmpfs": ("WRITABLE_TMPFS",),
    "pwd": ("PWD", "TARGET_PWD"),
    "cwd": ("CWD", "TARGET_CWD"),
    "disable-cache": ("DISABLE_CACHE",),
    "no-https": ("NOHTTPS", "NO_HTTPS"),
    "force": (),
    "home": (),
}

TRUE = {"1", "t", "T", "TRUE", "true", "True"}
FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_flags(args: list[str], table: dict, interspersed: bool) -> tuple[dict, list[str]]:
    """pflag parsing. Returns ({name: value}, positional args)."""
    short = {v[0]: k for k, v in table.items() if v[0]}
    values: dict = {}
    positional: list[str] = []

    def set_value(name: str, value: str, shown: str) -> None:
        kind = table[name][1]
        if kind == B:
            if value not in TRUE | FALSE:
                raise CobraError(
                    f'invalid argument "{value}" for "{shown}" flag: '
                    f'strconv.ParseBool: parsing "{value}": invalid syntax'
                )
            values[name] = value in TRUE
        elif kind == INT:
            if not re.fullmatch(r"[+-]?\d+", value):
                raise CobraError(
                    f'invalid argument "{value}" for "{shown}" flag: '
                    f'strconv.ParseInt: parsing "{value}": invalid syntax'
                )
            values[name] = int(value)
        elif kind == A:
            values.setdefault(name, []).append(value)
        elif kind == M:
            try:
                pairs = string_to_string(value)
            except ValueError as e:
                raise CobraError(f'invalid argument "{value}" for "{shown}" flag: {e}') from None
            values.setdefault(name, {}).update(pairs)
        else:
            values[name] = value

    def shown(name: str) -> str:
        s = table[name][0]
        return f"-{s}, --{name}" if s else f"--{name}"

    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            positional += args[i:]
            break
        if len(a) < 2 or a[0] != "-":
            positional.append(a)
            if not interspersed:
                positional += args[i:]
                break
            continue
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if name in ("help",):
                raise SystemExit(("help", None))
            if name not in table:
                raise CobraError(f"unknown flag: --{name}")
            if eq:
                set_value(name, value, shown(name))
            elif table[name][1] == B:
                values[name] = True
            elif i < len(args):
                set_value(name, args[i], shown(name))
                i += 1
            else:
                raise CobraError(f"flag needs an argument: --{name}")
            continue
        cluster = a[1:]
        j = 0
        while j < len(cluster):
            c = cluster[j]
            if c == "h" and "h" not in short:
                raise SystemExit(("help", None))
            if c not in short:
                raise CobraError(f"unknown shorthand flag: '{c}' in -{cluster}")
            name = short[c]
            rest = cluster[j + 1 :]
            if rest.startswith("="):
                set_value(name, rest[1:], shown(name))
                break
            if table[name][1] == B:
                values[name] = True
                j += 1
                continue
            if rest:
                set_value(name, rest, shown(name))
            elif i < len(args):
                set_value(name, args[i], shown(name))
                i += 1
            else:
                raise CobraError(f"flag needs an argument: '{c}' in -{cluster}")
            break
    return values, positional


def string_to_string(value: str) -> dict[str, str]:
    """pflag stringToString.Set: one '=' -> a single pair (quotes trimmed), several ->
    a CSV record of pairs."""
    n = value.count("=")
    if n == 0:
        raise ValueError(f"{value} must be formatted as key=value")
    if n == 1:
        items = [value.strip('"')]
    else:
        try:
            items = next(csv.reader([value]))
        except (csv.Error, StopIteration):
            raise ValueError(f"{value} must be formatted as key=value") from None
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq:
            raise ValueError(f"{item} must be formatted as key=value")
        out[k] = v
    return out


# ---------------------------------------------------------------------------- binds

# True: a flag; False: takes a value. Both tools accept only these four (an
# `archive-src` option once read here exists in neither project's bind.go).
BIND_OPTIONS = {"ro": True, "rw": True, "image-src": False, "id": False}
BIND_OPTIONS_APPTAINER = BIND_OPTIONS


def _is_option(s: str, options: dict) -> bool:
    return any(
        (flag and s == name) or (not flag and s.startswith(name + "="))
        for name, flag in options.items()
    )


def _options(text: str, options: dict) -> dict:
    out = {}
    for value in text.split(","):
        for name, is_flag in options.items():
            if is_flag and value == name:
                out[name] = ""
                break
            if value.startswith(name + "="):
                out[name] = value[len(name) + 1 :]
                break
        else:
            raise ValueError(f"while getting bind path: {value} is not a valid bind option")
    return out


def _split_unescaped(s: str, sep: str) -> list[str]:
    """apptainer bind.go splitBy: split on `sep` not preceded by a backslash."""
    parts, cur = [], ""
    for k, ch in enumerate(s):
        if ch == sep and k > 0 and s[k - 1] != "\\":
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _apptainer_bind(bind: str) -> dict:
    """apptainer pkg/runtime/engine/apptainer/config/bind.go newBindPath."""
    parts = _split_unescaped(bind, ":")
    if len(parts) > 3:
        raise ValueError(
            f'while getting bind path: bad bind syntax "{bind}": should be '
            f"{parts[0]}:{parts[1]}:{parts[2]}"
        )
    src = parts[0].replace("\\:", ":")
    if src == "":
        raise ValueError(f'while getting bind path: empty bind source for bind path "{bind}"')
    return {
        "source": src,
        "destination": parts[1] if len(parts) > 1 else src,
        "options": _options(parts[2], BIND_OPTIONS_APPTAINER) if len(parts) > 2 else {},
    }


def _singularity_bind(bind: str) -> dict:
    """sylabs/singularity pkg/util/bind/bind.go newBindPath (strings.SplitN(bind, ":", 3))."""
    parts = bind.split(":", 2)
    src = parts[0]
    if src == "":
        raise ValueError(f'while getting bind path: empty bind source for bind path "{bind}"')
    return {
        "source": src,
        "destination": parts[1] if len(parts) > 1 else src,
        "options": _options(parts[2], BIND_OPTIONS) if len(parts) > 2 else {},
    }


TOKEN = re.compile(r"([^,^:]+:?)")


def parse_bind_paths_apptainer(paths: list[str]) -> list[dict]:
    """Port of Apptainer's ParseBindPath([]string): every string holds comma-separated
    src[:dst[:opts]] specs whose options are comma-separated too; "\\," and "\\:"
    escape a comma or colon in the source."""
    binds = []
    for path in paths:
        concat_comma = concat_colon = False
        bind, elem = "", 0
        for m in TOKEN.findall(path):
            s = m.strip()
            is_option = _is_option(s, BIND_OPTIONS_APPTAINER)
            if elem == 2 and not is_option:
                if bind and bind[-1] == ":":
                    bind += s
                binds.append(_apptainer_bind(bind))
                elem, bind = 0, ""
            if elem == 0:
                if (s and s[-1] == "\\") or concat_comma:
                    if not concat_comma:
                        bind += s[:-1] + ","
                    else:
                        bind += s
                        elem += 1
                    concat_comma = not concat_comma
                    continue
                if (len(s) >= 2 and s[-2] == "\\" and s[-1] == ":") or concat_colon:
                    bind += s
                    if concat_colon:
                        elem += 1
                    concat_colon = not concat_colon
                    continue
                if bind == "":
                    bind = s
            is_colon = bind != "" and bind[-1] == ":"
            if elem == 2 and is_option:
                if not is_colon:
                    bind += ","
                bind += s
                continue
            if elem > 2:
                raise ValueError(f"wrong bind syntax: {bind}")
            if bind != "":
                if is_colon:
                    if elem > 0:
                        bind += s
                    elem += 1
                    continue
                binds.append(_apptainer_bind(bind))
                elem, bind = 0, ""
                continue
            bind = s
            elem += 1
        if bind != "":
            binds.append(_apptainer_bind(bind))
    return binds


def parse_bind_paths_singularity(paths: list[str]) -> list[dict]:
    """Port of SingularityCE's bind.ParseBindPath(strings.Join(paths, ","))."""
    binds = []
    bind, elem = "", 0
    for m in TOKEN.findall(",".join(paths)):
        s = m.strip()
        is_colon = bind != "" and bind[-1] == ":"
        if elem == 2:
            if _is_option(s, BIND_OPTIONS):
                if not is_colon:
                    bind += ","
                bind += s
                continue
        elif elem > 2:
            raise ValueError(f"wrong bind syntax: {bind}")
        elem += 1
        if bind != "":
            if is_colon:
                bind += s
                continue
            binds.append(_singularity_bind(bind))
            elem = 1
        bind = s
    if bind != "":
        binds.append(_singularity_bind(bind))
    return binds


def go_csv_record(text: str) -> list[str]:
    """The first record of Go's encoding/csv (LazyQuotes off), as pflag's readAsCSV and
    SingularityCE's --mount read a value. Raises ValueError with Go's message."""
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            start, i, cur = i, i + 1, ""
            while True:
                j = text.find('"', i)
                if j < 0:
                    raise ValueError(
                        f'parse error on line 1, column {start + 1}: extraneous or missing " '
                        "in quoted-field"
                    )
                cur += text[i:j]
                if j + 1 < n and text[j + 1] == '"':
                    cur += '"'
                    i = j + 2
                    continue
                i = j + 1
                break
            if i < n and text[i] not in ",\n":
                raise ValueError(
                    f"parse error on line 1, column {i + 1}: "
                    'extraneous or missing " in quoted-field'
                )
            fields.append(cur.replace("\r\n", "\n"))
        else:
            end = n
            for k in (text.find(",", i), text.find("\n", i)):
                if k >= 0:
                    end = min(end, k)
            field = text[i:end]
            if '"' in field:
                col = i + field.index('"') + 1
                raise ValueError(f'parse error on line 1, column {col}: bare " in non-quoted-field')
            fields.append(field.rstrip("\r"))
            i = end
        if i >= n or text[i] == "\n":
            return fields
        i += 1  # past the comma


def parse_mount(spec: str) -> dict:
    """--mount type=bind,source=S,destination=D[,ro][,image-src=P][,id=N] (CSV-read)."""
    try:
        fields = go_csv_record(spec)
    except ValueError as e:
        raise ValueError(f"while parsing mount {spec!r}: {e}") from None
    kv: dict[str, str] = {}
    for f in fields:
        k, eq, v = f.partition("=")
        kv[k] = v if eq else ""
    if kv.get("type") != "bind":
        raise ValueError(f"while parsing mount {spec!r}: only type=bind is supported")
    src = kv.get("source", kv.get("src"))
    dst = kv.get("destination", kv.get("dst", kv.get("target")))
    if not src or not dst:
        raise ValueError(f"while parsing mount {spec!r}: source and destination are required")
    opts = {}
    if "ro" in kv or "readonly" in kv:
        opts["ro"] = ""
    for k in ("image-src", "id"):
        if k in kv:
            opts[k] = kv[k]
    return {"source": src, "destination": dst, "options": opts}


def parse_bind_paths(paths: list[str], prog: str = "apptainer") -> list[dict]:
    if prog == "singularity":
        return parse_bind_paths_singularity(paths)
    return parse_bind_paths_apptainer(paths)


# ----------------------------------------------------------------------------- main


class App:
    def __init__(self, prog: str):
        self.prog = prog
        self.prefix = "APPTAINER_" if prog == "apptainer" else "SINGULARITY_"
        self.env_prefix = "APPTAINERENV_" if prog == "apptainer" else "SINGULARITYENV_"
        self.quiet = False

    # -- output
    def info(self, msg: str) -> None:
        if not self.quiet:
            print(f"INFO:    {msg}", file=sys.stderr)

    def warn(self, msg: str) -> None:
        if not self.quiet:
            print(f"WARNING: {msg}", file=sys.stderr)

    def getenv(self, key: str) -> str | None:
        """Value of PREFIX_KEY; Apptainer also reads the legacy SINGULARITY_KEY."""
        v = os.environ.get(self.prefix + key)
        if v is None and self.prog == "apptainer":
            v = os.environ.get("SINGULARITY_" + key)
            if v is not None:
                self.info(
                    f"Environment variable SINGULARITY_{key} is set, but "
                    f"APPTAINER_{key} is preferred"
                )
        return v

    def apply_env_keys(self, values: dict, table: dict) -> None:
        for flag, keys in ENV_KEYS.items():
            if flag not in table:
                continue
            for key in keys:
                v = self.getenv(key)
                if v is None:
                    continue
                kind = table[flag][1]
                if kind == A:  # EnvAppendValue: appended after the command-line values
                    values.setdefault(flag, []).append(v)
                elif kind == B:
                    if flag not in values and v in TRUE | FALSE:
                        values[flag] = v in TRUE
                elif flag not in values:
                    values[flag] = v

    # -- entry
    def main(self, argv: list[str]) -> int:
        C.log_invocation(self.prog, argv[1:])
        try:
            return self.dispatch(argv[1:])
        except CobraError as e:
            sub = getattr(self, "_sub", None)
            if sub:
                print(f'Error for command "{sub}": {e}', file=sys.stderr)
            else:
                print(f"Error: {e}", file=sys.stderr)
            print(f"Run '{self.prog} --help' for more detailed usage information.", file=sys.stderr)
            return 1
        except Fatal as e:
            print(f"FATAL:   {e}", file=sys.stderr)
            return 255
        except C.DoubleError as e:
            print(f"FATAL:   {e}", file=sys.stderr)
            return 255
        except SystemExit as e:
            if isinstance(e.code, tuple) and e.code[0] == "help":
                print(self.usage(getattr(self, "_sub", None)))
                return 0
            raise
        except KeyboardInterrupt:
            return 130
        except Exception as e:  # one line, no traceback (SLURMC_DOUBLE_DEBUG=1 shows it)
            return C.internal_error(self.prog, e)

    def usage(self, sub: str | None) -> str:
        uses = {
            "exec": "exec [exec options...] <container> <command>",
            "run": "run [run options...] <container> [args...]",
            "pull": "pull [pull options...] [output file] <URI>",
            "version": "version",
        }
        if sub in uses:
            return f"Usage:\n  {self.prog} [global options...] {uses[sub]}"
        return (
            f"Usage:\n  {self.prog} [global options...] <command>\n\nAvailable Commands:\n"
            "  exec        Run a command within a container\n"
            "  pull        Pull an image from a URI\n"
            "  run         Run the user-defined default command within a container\n"
            "  version     Show the version for " + self.prog
        )

    def dispatch(self, args: list[str]) -> int:
        gvals, rest = parse_flags(args, {**GLOBAL_FLAGS, "version": ("", B)}, False)
        self.quiet = bool(gvals.get("quiet") or gvals.get("silent"))
        if gvals.get("version"):
            name, ver = VERSIONS[self.prog]
            print(f"{name} version {ver}")
            return 0
        if not rest:
            print(self.usage(None))
            return 0
        sub, subargs = rest[0], rest[1:]
        if sub in ("version", "exec", "run", "pull"):
            self._sub = sub
        else:
            raise CobraError(f'unknown command "{sub}" for "{self.prog}"')
        if sub == "version":
            parse_flags(subargs, GLOBAL_FLAGS, True)
            print(VERSIONS[self.prog][1])
            return 0
        if sub == "pull":
            table = {**GLOBAL_FLAGS, **PULL_FLAGS}
            values, pos = parse_flags(subargs, table, False)  # flags after args are args
            self.quiet = self.quiet or bool(values.get("quiet") or values.get("silent"))
            self.apply_env_keys(values, table)
            if not 1 <= len(pos) <= 2:
                raise CobraError(f"accepts between 1 and 2 arg(s), received {len(pos)}")
            return self.pull(values, pos)
        table = {**GLOBAL_FLAGS, **ACTION_FLAGS}
        values, pos = parse_flags(subargs, table, False)
        self.quiet = self.quiet or bool(values.get("quiet") or values.get("silent"))
        self.apply_env_keys(values, table)
        if self.prog == "singularity" and values.get("bind"):
            # SingularityCE's -B is a pflag StringSlice: every value is read as CSV
            binds = []
            for v in values["bind"]:
                try:
                    binds += go_csv_record(v) if v else []
                except ValueError as e:
                    raise CobraError(f'invalid argument "{v}" for "-B, --bind" flag: {e}') from None
            values["bind"] = binds
        need = 2 if sub == "exec" else 1
        if len(pos) < need:
            raise CobraError(f"requires at least {need} arg(s), only received {len(pos)}")
        return self.action(sub, values, pos[0], pos[1:])

    # ------------------------------------------------------------------------ pull
    def pull(self, values: dict, pos: list[str]) -> int:
        src = pos[-1]
        transport, sep, ref = src.partition("://")
        if not sep:  # SingularityCE takes a bare name as library://; Apptainer wants a transport
            transport, ref = ("library" if self.prog == "singularity" else ""), src
        if ref == "":
            raise Fatal(f"Bad URI {src}")
        dest = values.get("name") or (pos[0] if len(pos) == 2 else None)
        if dest is None:
            if transport == "":
                raise Fatal("No transport type URI supplied")
            dest = default_pull_name(transport, ref)
        if values.get("dir"):
            dest = os.path.join(values["dir"], dest)
        if os.path.exists(dest) and not values.get("force"):  # a dangling link is absent
            raise Fatal(f'Image file already exists: "{dest}" - will not overwrite')
        if transport == "":
            raise Fatal("No transport type URI supplied")
        if transport not in ("docker",):
            if transport in (
                "library",
                "shub",
                "oras",
                "http",
                "https",
                "ipfs",
                "docker-archive",
                "docker-daemon",
                "oci",
                "oci-archive",
            ):
                raise Fatal(
                    f"Unsupported transport type: {transport} (the slurmc test "
                    "double emulates docker:// only)"
                )
            raise Fatal(f"Unsupported transport type: {transport}")
        self.pull_docker(ref, dest, values)
        return 0

    def pull_docker(self, ref: str, dest: str, values: dict) -> None:
        ref = ref.lstrip("/")
        self.info("Converting OCI blobs to SIF format")
        work = tempfile.mkdtemp(prefix="pull-", dir=C.cache_root())
        try:
            rootfs = os.path.join(work, "rootfs")
            try:
                meta = C.pull_to_dir(
                    ref,
                    rootfs,
                    tls_no_verify=bool(values.get("no-https") or values.get("nohttps")),
                    arch=values.get("arch"),
                )
            except C.DoubleError as e:
                raise Fatal(f"While making image from oci registry: {e}") from None
            self.info("Starting build...")
            add_singularity_metadata(rootfs, meta)
            sqfs = os.path.join(work, "image.sqfs")
            C.mksquashfs(rootfs, sqfs, ["-all-root"])
            self.info("Creating SIF file...")
            C.sif.pack(sqfs, dest)  # written to a temporary file, renamed into place
        except OSError as e:
            raise Fatal(f"While making image from oci registry: {e}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # ---------------------------------------------------------------------- actions
    def open_image(self, image: str, values: dict) -> tuple[str, str, str]:
        """(path shown to the user, kind, file or directory for ch-run)."""
        transport, sep, ref = image.partition("://")
        if sep and transport == "docker":
            dest = os.path.join(
                C.cache_root(),
                "oci-tmp-"
                + hashlib.sha256(image.encode("utf-8", "surrogateescape")).hexdigest()[:24]
                + ".sif",
            )
            if not os.path.exists(dest) or values.get("disable-cache"):
                self.pull_docker(ref, dest, values)
            image = dest
        elif sep and transport in ("library", "shub", "oras", "instance", "http", "https"):
            raise Fatal(
                f"Unsupported transport type: {transport} (the slurmc test double "
                "emulates local images and docker:// only)"
            )
        path = os.path.abspath(image) if image else os.getcwd() + "/"
        if not os.path.lexists(path) or image == "":
            # SingularityCE 3.11 puts "While checking image: " in front
            raise Fatal(
                ("While checking image: " if self.prog == "singularity" else "")
                + f"could not open image {path}: failed to retrieve path for {path}: "
                f"lstat {path}: no such file or directory"
            )
        kind = C.image_kind(path)
        if kind == "unknown":
            raise Fatal(f"could not open image {path}: image format not recognized")
        if kind == "sif":
            try:
                return path, kind, C.carve_sif(path)
            except C.DoubleError as e:
                raise Fatal(f"could not open image {path}: {e}") from None
        return path, kind, path

    def action(self, sub: str, values: dict, image: str, command: list[str]) -> int:
        shown, kind, img = self.open_image(image, values)
        # Both real tools hand the command over as UTF-8 text: bytes that are not UTF-8
        # arrive as U+FFFD, one per byte (`\xff\xfe` -> EF BF BD EF BF BD).
        command = [to_valid_utf8(a) for a in command]
        rkind = "sandbox" if kind == "sandbox" else "squashfs"
        cwd = os.getcwd()
        home_host = os.environ.get("HOME") or "/"
        contain = bool(values.get("contain") or values.get("containall"))
        cleanenv = bool(values.get("cleanenv") or values.get("containall"))
        for gpu in ("nv", "rocm"):
            # SingularityCE 3.11-4.5 warns when it finds no GPU files, saying "nv" for
            # --rocm too; the real Apptainer 1.4.5 says nothing (seen on a host without
            # GPUs or GPU libraries)
            if (
                self.prog == "singularity"
                and values.get(gpu)
                and not os.path.exists({"nv": "/dev/nvidiactl", "rocm": "/dev/kfd"}[gpu])
            ):
                self.warn("Could not find any nv files on this host!")
        if values.get("writable") and kind != "sandbox":
            if kind == "sif":
                raise Fatal(f"no SIF writable overlay partition found in {shown}")
            raise Fatal(f"could not use {shown} for writing: squashfs images are read-only")

        # ---- binds, in ch-run order: (host source, guest destination, is_dir)
        binds: list[tuple[str, str]] = []
        mountpoints: list[tuple[str, bool]] = []

        def visible(guest: str) -> str | None:
            """Host path a guest path shows, through the binds so far (last one wins)."""
            best = None
            for src, dst in binds:
                if C.is_under(guest, dst):
                    best = src + guest[len(dst.rstrip("/")) :] if dst != "/" else src + guest
            return best

        def add_bind(src: str, dst: str) -> None:
            host = visible(os.path.dirname(dst.rstrip("/")) or "/")
            if host is None:
                mountpoints.append((dst, os.path.isdir(src)))
            elif not os.path.lexists(visible(dst) or ""):
                raise Fatal(
                    f"container creation failed: mount hook function failure: mount "
                    f"{src}->{dst} error: while mounting {src}: destination {dst} "
                    "doesn't exist in container"
                )
            binds.append((src, dst))

        no_mount = {m for spec in values.get("no-mount", []) for m in spec.split(",")}
        home_dest = home_host
        if values.get("home"):
            hsrc, _, hdst = values["home"].partition(":")
            home_dest = hdst or hsrc
            if not contain and not os.path.exists(hsrc):
                raise Fatal(
                    f"container creation failed: mount hook function failure: mount "
                    f"{hsrc}->{home_dest} error: while mounting {hsrc}: mount source "
                    f"{hsrc} doesn't exist"
                )
        if not contain:
            if "tmp" not in no_mount:  # with ch-run --private-tmp: host /tmp (`mount tmp`)
                add_bind("/tmp", "/tmp")
                if C.guest_exists(img, rkind, "/var/tmp") == "d":
                    add_bind("/var/tmp", "/var/tmp")
            if not values.get("no-home") and "home" not in no_mount and home_dest != "/":
                hsrc = values["home"].partition(":")[0] if values.get("home") else home_host
                if os.path.isdir(hsrc) and visible(home_dest) != hsrc:
                    add_bind(hsrc, home_dest)
        else:
            mountpoints.append((home_dest, True))

        specs = list(values.get("bind", []))
        try:
            user_binds = parse_bind_paths(specs, self.prog)
        except ValueError as e:
            raise Fatal(f"while parsing bind path: {e}") from None
        for spec in values.get("mount", []):
            try:
                user_binds.append(parse_mount(spec))
            except ValueError as e:
                raise Fatal(str(e)) from None
        for bp in user_binds:
            src = os.path.abspath(bp["source"])
            dst = bp["destination"]
            if not dst.startswith("/"):
                dst = "/" + dst
            opts = bp["options"]
            if not os.path.exists(src):
                self.warn(f"skipping mount of {src}: stat {src}: no such file or directory")
                raise Fatal(
                    f"container creation failed: mount hook function failure: mount "
                    f"{src}->{dst} error: while mounting {src}: mount source {src} "
                    "doesn't exist"
                )
            if "image-src" in opts:
                src = self.image_bind_source(src, dst, opts)
            add_bind(src, dst)

        if (
            not contain
            and "cwd" not in no_mount
            and visible(cwd) != cwd
            and not (cwd in NO_CWD_BIND or any(C.is_under(cwd, t) for t in NO_CWD_BIND_TREES))
        ):
            add_bind(cwd, cwd)
        target_cwd = values.get("pwd") or values.get("cwd") or (home_dest if contain else cwd)

        try:
            rootfs = C.prepare_rootfs(img, rkind, mountpoints)
            if rootfs == img and rkind != "sandbox":
                # ch-run stays the parent of a SquashFS image's command (its FUSE loop)
                # and exits 1 when the command dies by a signal; from a directory it
                # execs the command, so a signal ends the double with it (caller sees
                # 128+N), as the real starter does.
                rootfs = C.unpack(img)
        except C.DoubleError as e:
            raise Fatal(f"container creation failed: {e}") from None

        # ---- environment, and the embedded action script (the image's own are not run)
        env = self.container_env(values, cleanenv, home_dest, shown, specs)
        user_vars = self.user_env(values)
        prepend = user_vars.pop("PREPEND_PATH", None)
        append = user_vars.pop("APPEND_PATH", None)
        if user_vars.pop("HOME", None) is not None:
            self.warn(
                f"Overriding HOME environment variable with {self.env_prefix}HOME is not permitted"
            )
        argv_in: list[str]
        if sub == "run":
            runner = "/.singularity.d/runscript"
            if C.guest_exists(img, rkind, runner) != "f":
                raise Fatal(f"no {runner} in {shown}")
            argv_in = [runner, *command]
        else:
            argv_in = list(command)
        user_vars = {k: to_valid_utf8(v) for k, v in user_vars.items()}
        names = [k for k in user_vars if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
        if C.guest_exists(img, rkind, "/bin/sh"):
            # Variables are injected right after /.singularity.d/env/99-base.sh is sourced
            # (never when the image lacks it), shell-evaluated unless --no-eval.
            no_eval = bool(values.get("no-eval")) and self.prog == "singularity"
            lines = []
            for k in names:
                if no_eval:
                    env["SLURMC_DOUBLE_UENV_" + k] = user_vars[k]
                    lines.append(f'export {k}="$SLURMC_DOUBLE_UENV_{k}"')
                else:
                    lines.append(f'export {k}="' + user_vars[k].replace('"', '\\"') + '"')
            if lines:
                env["SLURMC_DOUBLE_INJECT"] = "\n".join(lines) + "\n"
                env["SLURMC_DOUBLE_INJECT_FILE"] = f"/.inject-{self.prog}-env.sh"
            if prepend:
                env["SLURMC_DOUBLE_PREPEND_PATH"] = prepend
            if append:
                env["SLURMC_DOUBLE_APPEND_PATH"] = append
            env["SLURMC_DOUBLE_CWD"] = target_cwd
            env["SLURMC_DOUBLE_VARS"] = " ".join(k for k in env if k.startswith("SLURMC_DOUBLE_"))
            argv_in = ["/bin/sh", "-c", ACTION_SCRIPT, "sh", *argv_in]
            target_cwd = "/"
        else:  # no shell in the image: variables set as they are, no env scripts
            env.update({k: user_vars[k] for k in names})
            if prepend:
                env["PATH"] = prepend + ":" + env["PATH"]
            if append:
                env["PATH"] = env["PATH"] + ":" + append

        ch_run = C.find_tool("ch-run")
        cargs = [ch_run, "--private-tmp"]
        if values.get("writable") and kind == "sandbox":
            cargs.append("--write")
        for src, dst in binds:
            cargs.append(f"--bind={src}:{dst}")
        cargs.append(f"--cd={target_cwd}")
        tmpdir = os.environ.get("TMPDIR")
        if tmpdir and not cleanenv:  # ch-run unsets TMPDIR; the real runtimes keep it
            cargs += ["--env-no-expand", f"--set-env=TMPDIR={tmpdir}"]
        cargs += [rootfs, "--", *argv_in]
        env = C.charliecloud_env(env)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(ch_run, cargs, env)
        return 255  # not reached

    def image_bind_source(self, src: str, dst: str, opts: dict) -> str:
        """Directory to bind for `-B IMAGE:DST:image-src=PATH`: the image extracted once
        into the cache (unsquashfs), then PATH inside it."""
        kind = C.image_kind(src)
        if kind == "squashfs":
            root = C.unpack(src)
        elif kind == "sif":
            if opts.get("id"):
                _, ds = C.sif.load(src)
                match = [d for d in ds if str(d["id"]) == opts["id"]]
                if not match or match[0].get("fstype") != "Squashfs":
                    raise Fatal(
                        f"container creation failed: mount hook function failure: "
                        f"while mounting image {src}: no squashfs partition with id "
                        f"{opts['id']}"
                    )
                root = C.unpack(src, match[0]["offset"])
            else:  # the first data partition (a SIF's system partition is not one)
                _, ds = C.sif.load(src)
                data = [
                    d
                    for d in ds
                    if d["datatype_code"] == C.sif.DATA_PARTITION and d.get("parttype") == "Data"
                ]
                if not data:
                    raise Fatal(
                        f"container creation failed: mount hook function failure: "
                        f"while mounting image {src}: no data partition found"
                    )
                root = C.unpack(src, data[0]["offset"])
        elif kind == "sandbox":  # a directory is not a data image
            raise Fatal(
                f"container creation failed: mount hook function failure: while "
                f"mounting image {src}: {src} is a directory, not an image"
            )
        else:
            raise Fatal(
                f"container creation failed: mount hook function failure: while "
                f"mounting image {src}: image format not recognized"
            )
        inner = opts.get("image-src") or "/"
        host = os.path.normpath(root + "/" + inner.lstrip("/"))
        if not os.path.exists(host):
            raise Fatal(
                f"container creation failed: mount hook function failure: mount "
                f"{src}->{dst} error: while mounting image {src}: image-src {inner} "
                "doesn't exist in image"
            )
        return host

    def container_env(
        self, values: dict, cleanenv: bool, home: str, image: str, specs: list[str]
    ) -> dict[str, str]:
        env: dict[str, str] = {}
        for k, v in os.environ.items():
            if k.startswith(("SINGULARITYENV_", "APPTAINERENV_", "SLURMC_DOUBLE_")):
                continue
            if k in ("PATH", "HOME", "LD_LIBRARY_PATH", "TMPDIR"):
                continue
            if k.startswith(("SINGULARITY_", "APPTAINER_")):  # never passed in (both tools)
                continue
            if cleanenv and k not in ALWAYS_PASS:
                continue
            # SingularityCE turns even host variables into valid UTF-8
            env[k] = to_valid_utf8(v) if self.prog == "singularity" else v
        env["HOME"] = home
        env["PATH"] = DEFAULT_PATH
        env["LD_LIBRARY_PATH"] = "/.singularity.d/libs"
        name = os.path.basename(image)
        for p in ("SINGULARITY_", "APPTAINER_") if self.prog == "apptainer" else ("SINGULARITY_",):
            env[p + "CONTAINER"] = image
            env[p + "NAME"] = name
            env[p + "ENVIRONMENT"] = "/.singularity.d/env/91-environment.sh"
            if specs:
                env[p + "BIND"] = ",".join(specs)
        if os.environ.get("USER"):
            env["USER"] = os.environ["USER"]
        return env

    def user_env(self, values: dict) -> dict[str, str]:
        """Variables the user asked for: PREFIXENV_X (lowest), --env-file, --env."""
        out: dict[str, str] = {}
        prefixes = (
            ["SINGULARITYENV_", "APPTAINERENV_"]
            if self.prog == "apptainer"
            else ["SINGULARITYENV_"]
        )
        for prefix in prefixes:
            for k, v in os.environ.items():
                if k.startswith(prefix) and len(k) > len(prefix):
                    out[k[len(prefix) :]] = v
        if values.get("env-file"):
            out.update(read_env_file(values["env-file"]))
        out.update(values.get("env", {}))
        return out


# What the real tools' embedded action script does (Apptainer >= 1.0 and SingularityCE run
# an interpreter built into the runtime, not the image's /.singularity.d/actions/*):
# source /.singularity.d/env/*.sh in order, inject the user's variables right after
# 99-base.sh (a broken injection file: one line, every variable dropped, going on),
# change to the working directory (falling back to $HOME, then /), then run the
# command, which must be found on the container's PATH (else FATAL, exit 255).
ACTION_SCRIPT = r"""
for __s in /.singularity.d/env/*.sh; do
    [ -f "$__s" ] || continue
    . "$__s"
    if [ "${__s##*/}" = 99-base.sh ] && [ -n "${SLURMC_DOUBLE_INJECT:-}" ]; then
        if sh -n -c "$SLURMC_DOUBLE_INJECT" 2>/dev/null; then
            eval "$SLURMC_DOUBLE_INJECT"
        else
            echo "source: $SLURMC_DOUBLE_INJECT_FILE: reached EOF without closing quote \"" >&2
        fi
    fi
done
[ -n "${SLURMC_DOUBLE_PREPEND_PATH:-}" ] && PATH="$SLURMC_DOUBLE_PREPEND_PATH:$PATH"
[ -n "${SLURMC_DOUBLE_APPEND_PATH:-}" ] && PATH="$PATH:$SLURMC_DOUBLE_APPEND_PATH"
export PATH
cd "$SLURMC_DOUBLE_CWD" 2>/dev/null || cd "${HOME:-/}" 2>/dev/null || cd /
for __v in $SLURMC_DOUBLE_VARS; do unset "$__v"; done
unset __s __v SLURMC_DOUBLE_VARS
case $1 in
*/*) ;;
*)
    __found=
    set -f
    __ifs=$IFS
    IFS=:
    for __d in $PATH; do
        if [ -f "${__d:-.}/$1" ] && [ -x "${__d:-.}/$1" ]; then __found=1; break; fi
    done
    IFS=$__ifs
    set +f
    if [ -z "$__found" ]; then
        printf 'FATAL:   "%s": executable file not found in $PATH\n' "$1" >&2
        exit 255
    fi
    unset __found __ifs __d
    ;;
esac
exec "$@"
"""


def to_valid_utf8(text: str) -> str:
    """*text* (argv/environ decoded with surrogateescape) with every byte that is not
    UTF-8 replaced by U+FFFD, as the real tools deliver it."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_env_file(path: str) -> dict[str, str]:
    """--env-file: KEY=VALUE lines ('export ' allowed, '#' comments, one level of
    single or double quotes stripped). Apptainer evaluates the file with a shell
    interpreter; the double does not expand variables."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise Fatal(f"while processing {path}: {e.strerror}") from None
    out = {}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("export "):
            s = s[7:].lstrip()
        k, eq, v = s.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise Fatal(f"while processing {path}: line {n}: invalid environment assignment")
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k] = v
    return out


def default_pull_name(transport: str, ref: str) -> str:
    """uri.GetName: last path element of the reference, NAME_TAG.sif (tag 'latest')."""
    ref = ref.split("@", 1)[0]
    last = ref.rstrip("/").split("/")[-1]
    name, _, tag = last.partition(":")
    return f"{name}_{tag or 'latest'}.sif"


def add_singularity_metadata(rootfs: str, meta: dict) -> None:
    """What a Singularity build from docker:// adds: /.singularity.d with env scripts
    (the image's ENV as 10-docker2singularity.sh), action scripts and a runscript."""
    d = os.path.join(rootfs, ".singularity.d")
    for sub in ("env", "actions", "libs"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)

    def q(v: str) -> str:
        return "'" + v.replace("'", "'\"'\"'") + "'"

    envs = meta.get("env") or {}
    with open(os.path.join(d, "env", "10-docker2singularity.sh"), "w") as f:
        f.write("#!/bin/sh\n")
        for k, v in envs.items():
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                f.write(f"export {k}={q(str(v))}\n")
    with open(os.path.join(d, "env", "99-base.sh"), "w") as f:
        f.write(
            '#!/bin/sh\nif [ -z "$LD_LIBRARY_PATH" ]; then\n'
            '    LD_LIBRARY_PATH="/.singularity.d/libs"\nelse\n'
            '    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"\nfi\n'
            'PS1="Singularity> "\nexport LD_LIBRARY_PATH PS1\n'
        )
    source_env = (
        "for script in /.singularity.d/env/*.sh; do\n"
        '    if [ -f "$script" ]; then\n        . "$script"\n    fi\ndone\n'
    )
    scripts = {
        "actions/exec": "#!/bin/sh\n" + source_env + 'exec "$@"\n',
        "actions/run": "#!/bin/sh\n" + source_env + "if test -x /.singularity.d/runscript; then\n"
        '    exec /.singularity.d/runscript "$@"\nfi\n'
        'echo "There is no runscript defined for this container" >&2\nexit 1\n',
        "runscript": "#!/bin/sh\n" + 'if [ $# -gt 0 ]; then\n    exec "$@"\nfi\nexec /bin/sh\n',
    }
    for name, text in scripts.items():
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o755)
    os.makedirs(os.path.join(rootfs, "tmp"), exist_ok=True)


def main(prog: str, argv: list[str]) -> int:
    return App(prog).main(argv)
