"""Test double for NVIDIA's `enroot` (stdlib only).

Commands: version, import, create, start, list, remove, export. Images are SquashFS
files; containers are directories under $ENROOT_DATA_PATH; `start` runs through
Charliecloud's ch-run. See README.md for what is and is not emulated.

Grammar sources (stored copies of NVIDIA/enroot):
  * enroot.in: the per-command option loops (`-o|--output X`, `--output=X`,
    `-a|--arch`, `-n|--name`, `-f|--force`, `-c|--conf`, `-e|--env`, `-m|--mount`,
    `-r|--root`, `-w|--rw`, `--rc`, `-f|--fancy`, `--` ends options, any other `-?*`
    is an invalid option that prints the command's usage), configuration defaults
    (ENROOT_DATA_PATH = $XDG_DATA_HOME/enroot, ...; "no/false" values unset);
  * src/docker.sh docker::_parse_uri: `docker://[USER@][REGISTRY#]IMAGE[:TAG]` and the
    newer `docker://[USER@]REGISTRY/IMAGE[:TAG|@sha256:D]` (REGISTRY has a '.' or ':'),
    Docker Hub images get `library/`; docker::import's default output name
    `${image////+}${tag:++${tag}}.sqsh` with `library/` dropped for Docker Hub;
    docker::configure (/etc/environment, /etc/rc, /etc/fstab, /etc/rc.local);
  * src/runtime.sh: create/start/list/remove checks and their messages ("No such file
    or directory: X", "Invalid argument: X", "File already exists: X", "Invalid image
    format: X"), mount specs SRC[:DST[:TYPE[:OPTIONS]]] (`tr ':' ' '` into an fstab
    line; no DST: the same path; no options: rbind,x-create=auto), env names
    `^[[:alpha:]_][[:alnum:]_]*(=|$)`;
  * src/common.sh common::err: `[ERROR] message` on stderr, exit 1.
Imitates Enroot 4.1.2 (tag v4.1.2). Deliberate difference: the real enroot prints the
usage for an invalid option or a missing argument on stdout (`enroot::usage CMD 1`,
exit 1); the double prints it on stderr (exit 1 too).
"""

from __future__ import annotations

import base64
import ipaddress
import netrc
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import _common as C

VERSION = "4.1.2-slurmc-double"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

USAGES = {
    "create": """Usage: enroot create [options] [--] IMAGE

Create a container root filesystem from a container image.

 Options:
   -n, --name   Name of the container (defaults to "IMAGE")
   -f, --force  Overwrite an existing root filesystem""",
    "export": """Usage: enroot export [options] [--] NAME

Create a container image from a container root filesystem.

 Options:
   -o, --output  Name of the output image file (defaults to "NAME.sqsh")
   -f, --force   Overwrite an existing container image""",
    "import": """Usage: enroot import [options] [--] URI

Import a container image from a specific location.

 Schemes:
   docker://[USER@][REGISTRY#]IMAGE[:TAG]  Import a Docker image from a registry

 Options:
   -a, --arch    Architecture of the image (defaults to host architecture)
   -o, --output  Name of the output image file (defaults to "URI.sqsh")""",
    "list": """Usage: enroot list [options]

List all the container root filesystems on the system.

 Options:
   -f, --fancy  Display more information in tabular format""",
    "remove": """Usage: enroot remove [options] [--] NAME...

Delete one or multiple container root filesystems.

 Options:
   -f, --force  Do not prompt for confirmation""",
    "start": """Usage: enroot start [options] [--] NAME|IMAGE [COMMAND] [ARG...]

Start a container and invoke the command script within its root filesystem.
Command and arguments are passed to the script as input parameters.

In the absence of a command script and if a command was given, it will be executed directly.
Otherwise, an interactive shell will be started within the container.

 Options:
   -c, --conf CONFIG    Specify a configuration script to run before the container starts
   -e, --env KEY[=VAL]  Export an environment variable inside the container
       --rc SCRIPT      Override the command script inside the container
   -r, --root           Ask to be remapped to root inside the container
   -w, --rw             Make the container root filesystem writable
   -m, --mount FSTAB    Perform a mount from the host inside the container (colon-separated)""",
    "": """Usage: enroot COMMAND [ARG...]

Command line utility for manipulating container sandboxes.

 Commands:
   batch  [options] [--] CONFIG [COMMAND] [ARG...]
   bundle [options] [--] IMAGE
   create [options] [--] IMAGE
   exec   [options] [--] PID COMMAND [ARG...]
   export [options] [--] NAME
   import [options] [--] URI
   list   [options]
   remove [options] [--] NAME...
   start  [options] [--] NAME|IMAGE [COMMAND] [ARG...]
   version""",
}


class Usage(Exception):
    pass


class Err(Exception):
    pass


def err(msg: str):
    raise Err(msg)


def log(level: str, msg: str) -> None:
    print(f"[{level}] {msg}", file=sys.stderr)


def config() -> dict[str, str]:
    """enroot.in's config::export defaults (environment first), then config::fini."""
    env = os.environ
    home = env.get("HOME") or os.path.expanduser("~")
    data_home = env.get("XDG_DATA_HOME") or os.path.join(home, ".local/share")
    cache_home = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    cfg = {
        "ENROOT_DATA_PATH": os.path.join(data_home, "enroot"),
        "ENROOT_CACHE_PATH": os.path.join(cache_home, "enroot"),
        "ENROOT_CONFIG_PATH": os.path.join(config_home, "enroot"),
        "ENROOT_TEMP_PATH": env.get("TMPDIR") or "/tmp",
        "ENROOT_SQUASH_OPTIONS": "-comp lzo -noD",
        "ENROOT_ROOTFS_WRITABLE": "false",
        "ENROOT_REMAP_ROOT": "false",
        "ENROOT_FORCE_OVERRIDE": "false",
        "ENROOT_MOUNT_HOME": "false",
    }
    for k in cfg:
        if env.get(k):
            cfg[k] = env[k]
    for k, v in list(cfg.items()):
        if re.fullmatch(r"no?|N[oO]?|[fF](alse)?|FALSE", v):
            cfg[k] = ""
    for k in ("ENROOT_DATA_PATH", "ENROOT_CACHE_PATH"):
        os.makedirs(cfg[k], mode=0o700, exist_ok=True)
    return cfg


def parse(args: list[str], cmd: str, with_value: dict[str, str], flags: dict[str, str]):
    """enroot.in option loop: exact option words, `--long=value` for options taking a
    value, `--` ends options, any other word starting with '-' (and longer than '-')
    is invalid; the first other word ends the options."""
    opts: dict = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in with_value:
            if i + 1 >= len(args) or args[i + 1] == "":
                raise Usage(cmd)
            key = with_value[a]
            if key in ("env", "mount"):
                opts.setdefault(key, []).append(args[i + 1])
            else:
                opts[key] = args[i + 1]
            i += 2
            continue
        if a.startswith("--") and "=" in a and a.split("=", 1)[0] in with_value:
            name, value = a.split("=", 1)
            if value == "":
                raise Usage(cmd)
            key = with_value[name]
            if key in ("env", "mount"):
                opts.setdefault(key, []).append(value)
            else:
                opts[key] = value
            i += 1
            continue
        if a in flags:
            opts[flags[a]] = True
            i += 1
            continue
        if a == "--":
            i += 1
            break
        if len(a) > 1 and a.startswith("-"):
            raise Usage(cmd)
        break
    return opts, args[i:]


# --------------------------------------------------------------------------- URIs

REG_USER = r"[A-Za-z0-9_.!~*'()%;:&=+$,-@]+"
REG_IMAGE = r"[a-z0-9/._-]+"
REG_TAG = r"[A-Za-z0-9._:-]+"
REG_DIGEST = r"sha256:[A-Za-z0-9]+"
HUB = "registry-1.docker.io"


def parse_uri(uri: str) -> tuple[str, str, str, str]:
    """docker::_parse_uri -> (user, registry, image, tag-or-digest)."""
    u = rf"^docker://(({REG_USER})@)?"
    pats = [
        (u + rf"([^/#]+)/({REG_IMAGE}):({REG_TAG})@({REG_DIGEST})$", "std", 3, 4, 6),
        (u + rf"([^/#]+)/({REG_IMAGE})@({REG_DIGEST})$", "std", 3, 4, 5),
        (u + rf"([^/#]+)/({REG_IMAGE})(:({REG_TAG}))?$", "std", 3, 4, 6),
        (u + rf"([^/@#:]+):({REG_TAG})@({REG_DIGEST})$", "hub", 3, None, 5),
        (u + rf"([^/@#:]+)@({REG_DIGEST})$", "hub", 3, None, 4),
        (u + rf"([^/@#:]+)(:({REG_TAG}))?$", "hub", 3, None, 5),
        (u + rf"([^#/@]+)#({REG_IMAGE}):({REG_TAG})@({REG_DIGEST})$", "hash", 3, 4, 6),
        (u + rf"([^#/@]+)#({REG_IMAGE})@({REG_DIGEST})$", "hash", 3, 4, 5),
        (u + rf"([^#/@]+)#({REG_IMAGE})(:({REG_TAG}))?$", "hash", 3, 4, 6),
    ]
    for pat, form, g_reg, g_img, g_tag in pats:
        m = re.match(pat, uri)
        if not m:
            continue
        user = m.group(2) or ""
        tag = m.group(g_tag) or ""
        if form == "std":
            reg, img = m.group(g_reg), m.group(g_img)
            if not re.search(r"[.:]", reg):
                reg, img = HUB, f"{reg}/{img}"
        elif form == "hub":
            reg, img = HUB, f"library/{m.group(g_reg)}"
        else:
            reg, img = m.group(g_reg), m.group(g_img)
        return user, reg, img, tag or "latest"
    err(f"Invalid image reference: {uri}")
    raise AssertionError


def default_image_name(registry: str, image: str, tag: str) -> str:
    display = (
        image[len("library/") :] if registry == HUB and image.startswith("library/") else image
    )
    return display.replace("/", "+") + (f"+{tag}" if tag else "") + ".sqsh"


def ch_image_ref(registry: str, image: str, tag: str) -> str:
    if registry == HUB:
        base = image[len("library/") :] if image.startswith("library/") else image
    else:
        base = f"{registry}/{image}"
    return base + (f"@{tag}" if tag.startswith("sha256:") else f":{tag}")


# ----------------------------------------------------------------------- commands


def cmd_import(args: list[str], cfg: dict) -> int:
    opts, rest = parse(
        args, "import", {"-a": "arch", "--arch": "arch", "-o": "output", "--output": "output"}, {}
    )
    if len(rest) < 1:
        raise Usage("import")
    uri = rest[0]
    if not uri.startswith("docker://"):
        if uri.startswith(("dockerd://", "podman://")):
            err(f"Invalid argument: {uri} (the slurmc test double imports docker:// only)")
        err(f"Invalid argument: {uri}")
    _user, registry, image, tag = parse_uri(uri)
    filename = opts.get("output") or default_image_name(registry, image, tag)
    filename = os.path.abspath(filename)
    if os.path.lexists(filename):
        err(f"File already exists: {filename}")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(opts.get("arch", ""), opts.get("arch"))
    log("INFO", "Querying registry for permission grant")
    login = credentials(cfg, registry)
    manifest_head(registry, image, tag, login)
    log("INFO", "Fetching image manifest")
    work = tempfile.mkdtemp(prefix="enroot.", dir=cfg["ENROOT_TEMP_PATH"])
    try:
        rootfs = os.path.join(work, "rootfs")
        try:
            meta = C.pull_to_dir(
                ch_image_ref(registry, image, tag),
                rootfs,
                tls_no_verify=False,
                arch=arch,
                login=login,
            )
        except C.DoubleError as e:
            err(str(e))
        configure_rootfs(rootfs, meta)
        log("INFO", "Creating squashfs filesystem...")
        tmp = os.path.join(
            os.path.dirname(filename), f".{os.path.basename(filename)}.{os.getpid()}"
        )
        try:
            C.mksquashfs(rootfs, tmp, ["-all-root", *shlex.split(cfg["ENROOT_SQUASH_OPTIONS"])])
            os.replace(tmp, filename)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _loopback(registry: str) -> bool:
    host = registry[1:].split("]")[0] if registry.startswith("[") else registry.split(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials(cfg: dict, registry: str) -> tuple[str, str] | None:
    """The login for *registry* in $ENROOT_CONFIG_PATH/.credentials, the netrc file real
    enroot hands to curl (`--netrc-file`); None without one."""
    path = os.path.join(cfg["ENROOT_CONFIG_PATH"], ".credentials")
    if not os.path.isfile(path):
        return None
    try:
        entry = netrc.netrc(path).authenticators(registry)
    except (netrc.NetrcParseError, OSError) as e:
        err(f"Could not read {path}: {e}")
    if entry is None or entry[0] is None or entry[2] is None:
        return None
    return entry[0], entry[2]


def manifest_head(
    registry: str, image: str, tag: str, login: tuple[str, str] | None = None
) -> None:
    """docker::_authenticate: `curl -I` of the manifest URL with no Accept header
    (CURL_IGNORE=401), certificates as curl finds them (CURL_CA_BUNDLE, then
    SSL_CERT_DIR, then SSL_CERT_FILE, then the system's). docker-registry 2.8 answers
    404 there for an image pushed with an OCI manifest, so real enroot cannot import
    it; nor can this double. Only for registries on this machine (no other network)."""
    if not _loopback(registry):
        return
    url = f"https://{registry}/v2/{image}/manifests/{tag}"
    env = os.environ
    if env.get("CURL_CA_BUNDLE"):
        ctx = ssl.create_default_context(cafile=env["CURL_CA_BUNDLE"])
    elif env.get("SSL_CERT_DIR"):
        ctx = ssl.create_default_context(capath=env["SSL_CERT_DIR"])
    elif env.get("SSL_CERT_FILE"):
        ctx = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
    else:
        ctx = ssl.create_default_context()
    request = urllib.request.Request(url, method="HEAD")
    try:
        urllib.request.urlopen(request, context=ctx, timeout=30).close()
    except urllib.error.HTTPError as e:
        if e.code != 401:
            err(f"URL {url} returned error code: {e.code} {e.reason}")
        # a Basic realm: curl --netrc-file answers it with the login, if there is one
        if not e.headers.get("WWW-Authenticate", "").lower().startswith("basic"):
            return
        if login is None:
            err(f"URL {url} returned error code: 401 Unauthorized")
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            urllib.request.urlopen(request, context=ctx, timeout=30).close()
        except urllib.error.HTTPError as e2:
            err(f"URL {url} returned error code: {e2.code} {e2.reason}")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, ssl.SSLCertVerificationError):
            err(f"curl: (60) SSL certificate problem: {reason.verify_message}")
        err(f"curl: (7) Failed to connect to {registry}: {reason}")


def configure_rootfs(rootfs: str, meta: dict) -> None:
    """docker::configure: /etc/environment, /etc/fstab (volumes), /etc/rc, /etc/rc.local."""
    etc = os.path.join(rootfs, "etc")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "environment"), "w") as f:
        for k, v in (meta.get("env") or {}).items():
            f.write(f"{k}={v}\n")
    with open(os.path.join(etc, "fstab"), "w") as f:
        for vol in meta.get("volumes") or []:
            f.write(f"${{ENROOT_ROOTFS}}{vol} {vol} none x-create=dir,bind,rw,nosuid,nodev\n")
    workdir = meta.get("cwd") or "/"
    os.makedirs(os.path.join(rootfs, workdir.lstrip("/")), exist_ok=True)
    with open(os.path.join(etc, "rc"), "w") as f:
        for k, v in (meta.get("labels") or {}).items():
            f.write(f"# {k} {v}\n")
        f.write(
            f"mkdir -p {shlex.quote(workdir)} 2> /dev/null\n"
            f"cd {shlex.quote(workdir)} && unset OLDPWD || exit 1\n\n"
            "if [ -s /etc/rc.local ]; then\n    . /etc/rc.local\nfi\n\n"
            'if [ $# -gt 0 ]; then\n    exec "$@"\nelse\n    exec /bin/sh\nfi\n'
        )
    with open(os.path.join(etc, "rc.local"), "w") as f:
        f.write(
            "# This file is sourced by /etc/rc when the container starts.\n"
            "# It can be used to manipulate the entrypoint or the command of the container.\n"
        )


def is_squashfs(path: str) -> bool:
    return os.path.isfile(path) and C.image_kind(path) == "squashfs"


def cmd_create(args: list[str], cfg: dict) -> int:
    opts, rest = parse(
        args, "create", {"-n": "name", "--name": "name"}, {"-f": "force", "--force": "force"}
    )
    if len(rest) < 1:
        raise Usage("create")
    image = os.path.realpath(rest[0]) if rest[0] else ""
    if not image:
        err("Invalid argument")
    if not os.path.isfile(image):
        err(f"No such file or directory: {image}")
    if not is_squashfs(image):
        err(f"Invalid image format: {image}")
    name = opts.get("name") or os.path.basename(image[:-5] if image.endswith(".sqsh") else image)
    if "/" in name:
        err(f"Invalid argument: {name}")
    rootfs = os.path.join(cfg["ENROOT_DATA_PATH"], name)
    if os.path.lexists(rootfs):
        if not (opts.get("force") or cfg["ENROOT_FORCE_OVERRIDE"]):
            err(f"File already exists: {rootfs}")
        shutil.rmtree(rootfs)
    log("INFO", "Extracting squashfs filesystem...")
    tmp = os.path.join(cfg["ENROOT_DATA_PATH"], f".{name}.{os.getpid()}")
    try:
        C.run_quiet(
            [C.find_tool("unsquashfs"), "-no-progress", "-quiet", "-no-xattrs", "-d", tmp, image],
            f"Failed to extract {image}",
        )
        os.rename(tmp, rootfs)
    except C.DoubleError as e:
        err(str(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cmd_export(args: list[str], cfg: dict) -> int:
    opts, rest = parse(
        args, "export", {"-o": "output", "--output": "output"}, {"-f": "force", "--force": "force"}
    )
    if len(rest) < 1:
        raise Usage("export")
    name = rest[0]
    if not name:
        err("Invalid argument")
    if "/" in name:
        err(f"Invalid argument: {name}")
    rootfs = os.path.join(cfg["ENROOT_DATA_PATH"], name)
    if not os.path.isdir(rootfs):
        err(f"No such file or directory: {rootfs}")
    filename = os.path.abspath(opts.get("output") or f"{name}.sqsh")
    if os.path.lexists(filename):
        if not (opts.get("force") or cfg["ENROOT_FORCE_OVERRIDE"]):
            err(f"File already exists: {filename}")
        os.unlink(filename)
    log("INFO", "Creating squashfs filesystem...")
    C.mksquashfs(rootfs, filename, ["-all-root", *shlex.split(cfg["ENROOT_SQUASH_OPTIONS"])])
    return 0


def cmd_list(args: list[str], cfg: dict) -> int:
    opts, _rest = parse(args, "list", {}, {"-f": "fancy", "--fancy": "fancy"})
    names = sorted(n for n in os.listdir(cfg["ENROOT_DATA_PATH"]) if not n.startswith("."))
    if not opts.get("fancy"):
        for n in names:
            print(n)
        return 0
    rows = [("NAME", "SIZE", "PID", "STATE", "STARTED", "TIME", "MNTNS", "USERNS", "COMMAND")]
    for n in names:
        p = subprocess.run(
            ["du", "-sh", "--", os.path.join(cfg["ENROOT_DATA_PATH"], n)],
            capture_output=True,
            text=True,
        )
        rows.append((n, p.stdout.split("\t")[0] if p.returncode == 0 else "?"))
    width = max(len(r[0]) for r in rows) + 2
    for r in rows:
        print(r[0].ljust(width) + "  ".join(r[1:]))
    return 0


def cmd_remove(args: list[str], cfg: dict) -> int:
    opts, rest = parse(args, "remove", {}, {"-f": "force", "--force": "force"})
    if len(rest) < 1:
        raise Usage("remove")
    for name in rest:
        if not name:
            err("Invalid argument")
        if "/" in name:
            err(f"Invalid argument: {name}")
        rootfs = os.path.join(cfg["ENROOT_DATA_PATH"], name)
        if not os.path.isdir(rootfs):
            err(f"No such file or directory: {rootfs}")
        if not (opts.get("force") or cfg["ENROOT_FORCE_OVERRIDE"]):
            print(
                f"Do you really want to delete {rootfs}? [y/N] ",
                end="",
                file=sys.stderr,
                flush=True,
            )
            answer = sys.stdin.readline().strip()
            if answer not in ("y", "Y", "yes", "Yes", "YES"):
                continue
        shutil.rmtree(rootfs)
    return 0


def conf_functions(conf: str) -> dict[str, str | None]:
    """Run the configuration script's environ() and mounts() with bash, as enroot does
    before starting the container; also return the body of rc() if defined."""
    script = (
        'source "$1" >/dev/null\n'
        'if declare -F environ >/dev/null; then echo "@@environ"; environ; fi\n'
        'if declare -F mounts >/dev/null; then echo "@@mounts"; mounts; fi\n'
        'if declare -F rc >/dev/null; then echo "@@rc"; declare -f rc | sed "1,2d;\\$d"; fi\n'
    )
    p = subprocess.run(["bash", "-c", script, "conf", conf], capture_output=True, text=True)
    if p.returncode != 0:
        err(f"Invalid argument: {conf}")
    out: dict[str, list[str]] = {}
    cur = None
    for line in p.stdout.splitlines():
        if line in ("@@environ", "@@mounts", "@@rc"):
            cur = line[2:]
            out[cur] = []
        elif cur:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def cmd_start(args: list[str], cfg: dict) -> int:
    opts, rest = parse(
        args,
        "start",
        {
            "-c": "conf",
            "--conf": "conf",
            "-m": "mount",
            "--mount": "mount",
            "-e": "env",
            "--env": "env",
            "--rc": "rc",
        },
        {"-r": "root", "--root": "root", "-w": "rw", "--rw": "rw"},
    )
    if len(rest) < 1:
        raise Usage("start")
    target, command = rest[0], rest[1:]
    if not target:
        err("Invalid argument")
    if is_squashfs(target):
        image, kind = os.path.realpath(target), "squashfs"
    else:
        if "/" in target:
            err(f"Invalid argument: {target}")
        image, kind = os.path.join(cfg["ENROOT_DATA_PATH"], target), "sandbox"
        if not os.path.isdir(image):
            err(f"No such file or directory: {image}")
    mounts = list(opts.get("mount", []))
    environ = list(opts.get("env", []))
    for m in mounts:  # SRC[:DST[:TYPE[:OPTIONS]]], made an fstab line with tr ':' ' '
        if not re.fullmatch(r"[^\s:]+(:[^\s:]*){0,3}", m):
            err(f"Invalid argument: {m}")
    for e in environ:
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*(=|$)", e):
            err(f"Invalid argument: {e}")
    rc_text = None
    conf_env: list[str] = []
    conf_mounts: list[str] = []
    if opts.get("conf"):
        conf = os.path.realpath(opts["conf"])
        if not os.path.isfile(conf):
            err(f"No such file or directory: {conf}")
        funcs = conf_functions(conf)
        conf_env = [ln for ln in (funcs.get("environ") or "").splitlines() if "=" in ln]
        conf_mounts = [ln for ln in (funcs.get("mounts") or "").splitlines() if ln.strip()]
        rc_text = funcs.get("rc")
    if opts.get("rc"):
        rc = os.path.realpath(opts["rc"])
        if not os.path.isfile(rc):
            err(f"No such file or directory: {rc}")
        with open(rc) as f:
            rc_text = f.read()
    writable = bool(opts.get("rw") or cfg["ENROOT_ROOTFS_WRITABLE"])
    remap_root = bool(opts.get("root") or cfg["ENROOT_REMAP_ROOT"])

    # mounts: fstab lines "SRC DST [TYPE [OPTIONS]]" (CLI form is colon-separated)
    binds: list[tuple[str, str, bool]] = []
    mountpoints: list[tuple[str, bool]] = []
    for spec in [*conf_mounts, *[m.replace(":", " ") for m in mounts]]:
        fields = spec.split()
        src = fields[0]
        dst = fields[1] if len(fields) > 1 else src  # -m SRC: the same path inside
        # enroot-mount: no options given -> a recursive bind that creates its mount point
        options = fields[3].split(",") if len(fields) > 3 else ["rbind", "x-create=auto"]
        if src in ("none", "tmpfs"):
            continue  # kernel file systems: not emulated
        src = os.path.abspath(src)
        guest = "/" + dst.lstrip("/")
        if not os.path.exists(src):
            err(
                f"enroot-mount: failed to mount: {src} at {image}{guest}: No such file or directory"
            )
        if C.guest_exists(image, kind, guest) is None:
            if not any(o.startswith("x-create") for o in options):
                err(
                    f"enroot-mount: failed to mount: {src} at {image}{guest}: "
                    "No such file or directory"
                )
            mountpoints.append((guest, os.path.isdir(src)))
        binds.append((src, guest, "ro" in options))  # enforced by C.namespace_wrapper

    # environment: the image's /etc/environment, the configuration, then --env
    env: dict[str, str] = {}
    text = C.read_image_file(image, kind, "/etc/environment") or ""
    for line in [*text.splitlines(), *conf_env]:
        k, eq, v = line.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            env[k] = v
    for e in environ:
        k, eq, v = e.partition("=")
        env[k] = v if eq else os.environ.get(k, "")
    env.setdefault("PATH", DEFAULT_PATH)
    for k in ("TERM", "USER", "LOGNAME"):
        if k in os.environ and k not in env:
            env[k] = os.environ[k]
    env.setdefault("HOME", os.environ.get("HOME", "/"))

    cleanup = None
    if writable and kind == "squashfs":
        # enroot starts an image on a fuse-overlayfs over tmpfs: writable, not persistent
        cleanup = tempfile.mkdtemp(prefix="enroot-rw.", dir=C.cache_root())
        root = os.path.join(cleanup, "rootfs")
        C.run_quiet(
            [C.find_tool("unsquashfs"), "-no-progress", "-quiet", "-no-xattrs", "-d", root, image],
            f"Failed to mount: {image}",
        )
        for p, d in mountpoints:
            C.create_mountpoint(root, p, d)
    elif kind == "sandbox":
        for p, d in mountpoints:  # enroot creates x-create mount points in the rootfs
            C.create_mountpoint(image, p, d)
        root = image
    else:
        root = C.prepare_rootfs(image, kind, mountpoints)
        if not os.path.isdir(root):
            # ch-run 0.31 runs a SquashFS file in a child and exits 1 when that child is
            # killed; on a directory it execs, so a signal ends enroot with 128+N
            root = C.unpack(root)

    rc_kind = C.guest_exists(root, "sandbox" if os.path.isdir(root) else "squashfs", "/etc/rc")
    if rc_text is not None:
        argv_in = ["/bin/sh", "-c", rc_text, "sh", *command]
    elif rc_kind == "f":
        argv_in = ["/bin/sh", "/etc/rc", *command]
    elif command:
        argv_in = command
    else:
        argv_in = ["/bin/sh"]

    ch_run = C.find_tool("ch-run")
    cargs = [ch_run, "--private-tmp", "--cd=/"]
    if writable:
        cargs.append("--write")
    if remap_root:
        cargs += ["--uid=0", "--gid=0"]
    prefix, ch_binds = C.namespace_wrapper(binds)
    for src, dst in ch_binds:
        cargs.append(f"--bind={src}:{dst}")
    cargs = [*prefix, *cargs, root, "--", *argv_in]
    env = C.charliecloud_env(env)
    sys.stdout.flush()
    sys.stderr.flush()
    if cleanup is None:
        os.execve(cargs[0], cargs, env)
    rc = 0
    try:
        rc = subprocess.run(cargs, env=env).returncode
        return rc
    finally:
        shutil.rmtree(cleanup, ignore_errors=True)
        if rc < 0:  # killed: end the same way (128+N for the caller)
            signal.signal(-rc, signal.SIG_DFL)
            os.kill(os.getpid(), -rc)


COMMANDS = {
    "import": cmd_import,
    "create": cmd_create,
    "start": cmd_start,
    "list": cmd_list,
    "remove": cmd_remove,
    "export": cmd_export,
}


def main(argv: list[str]) -> int:
    C.log_invocation("enroot", argv[1:])
    args = argv[1:]
    try:
        if not args:
            raise Usage("")
        command, rest = args[0], args[1:]
        if command == "version":
            print(VERSION)
            return 0
        if command in ("batch", "bundle", "exec"):
            err(f"the slurmc test double does not emulate 'enroot {command}'")
        if command not in COMMANDS:
            raise Usage("")
        return COMMANDS[command](rest, config())
    except Usage as u:
        print(USAGES[str(u)], file=sys.stderr)
        return 1
    except Err as e:
        log("ERROR", str(e))
        return 1
    except C.DoubleError as e:
        log("ERROR", str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # one line, no traceback (SLURMC_DOUBLE_DEBUG=1 shows it)
        return C.internal_error("enroot", e)
