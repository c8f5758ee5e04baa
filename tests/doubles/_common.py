"""Shared machinery of the container-runtime test doubles (stdlib only).

The doubles (bin/singularity, bin/apptainer, bin/enroot, bin/srun) accept the real
tools' command-line grammar and execute through Charliecloud's `ch-run`, which runs a
SquashFS image or a directory as an unprivileged container. This module holds what
they share: the invocation log, the cache under ${TMPDIR:-/tmp}/slurmc-doubles, image
identification (SIF / SquashFS / directory), SIF carving, SquashFS listings, and the
"mount point must exist" work-around described in README.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile

DOUBLES_DIR = os.path.dirname(os.path.realpath(__file__))
BIN_DIR = os.path.join(DOUBLES_DIR, "bin")
sys.path.insert(0, DOUBLES_DIR)

import sif  # noqa: E402  (sibling module, found through the path set above)

SQUASHFS_MAGIC = b"hsqs"


class DoubleError(Exception):
    """An error the double reports on one line and exits with `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------- log


def log_invocation(tool: str, argv: list[str] | None = None, **extra) -> None:
    """Append one JSON line {"tool", "argv", "cwd", "pid"} to $SLURMC_DOUBLE_LOG.

    `argv` is the argument list after the program name. Arguments that are not valid
    UTF-8 are kept as the lone surrogates Python decodes them to (JSON "\\udcXX")."""
    path = os.environ.get("SLURMC_DOUBLE_LOG")
    if not path:
        return
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = os.environ.get("PWD", "")
    record = {
        "tool": tool,
        "argv": list(sys.argv[1:] if argv is None else argv),
        "cwd": cwd,
        "pid": os.getpid(),
    }
    record.update(extra)
    line = (json.dumps(record) + "\n").encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write(2) of an O_APPEND file: lines do not interleave
    finally:
        os.close(fd)


def internal_error(prog: str, e: BaseException) -> int:
    """A bug or an unforeseen state in a double: one line on stderr, exit 255."""
    if os.environ.get("SLURMC_DOUBLE_DEBUG"):
        raise e
    print(f"{prog}: slurmc test double internal error: {type(e).__name__}: {e}", file=sys.stderr)
    return 255


# -------------------------------------------------------------------------- tools


def find_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if not found:
        raise DoubleError(f"slurmc test double: required tool not found: {name}", 255)
    return found


def run_quiet(argv: list[str], what: str, env: dict | None = None) -> str:
    """Run a helper tool; on failure raise DoubleError with its last stderr line."""
    p = subprocess.run(argv, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.decode(errors="replace").splitlines() if ln.strip()]
        tail = lines[-1] if lines else f"exit status {p.returncode}"
        raise DoubleError(f"{what}: {tail}")
    return p.stdout.decode(errors="surrogateescape")


def charliecloud_env(env: dict[str, str]) -> dict[str, str]:
    """ch-run refuses to start without $USER; ch-image needs Debian's python3 (with
    python3-lark) first on PATH (FIELD-NOTES section 1)."""
    env = dict(env)
    if not env.get("USER"):
        try:
            env["USER"] = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            env["USER"] = str(os.getuid())
    return env


def ch_image_env(env: dict[str, str]) -> dict[str, str]:
    env = charliecloud_env(env)
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    return env


# -------------------------------------------------------------------------- cache


def cache_root() -> str:
    """${TMPDIR:-/tmp}/slurmc-doubles (…-UID when another user owns that one)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    root = os.path.join(base, "slurmc-doubles")
    os.makedirs(root, exist_ok=True)
    if not os.access(root, os.W_OK | os.X_OK):
        root = os.path.join(base, f"slurmc-doubles-{os.getuid()}")
        os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def file_key(path: str) -> str:
    """Identity of a file's current content: real path + size + mtime (+ inode)."""
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_dev}\0{st.st_ino}"
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:24]


@contextlib.contextmanager
def locked(path: str):
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def build_once(final: str, build) -> str:
    """Create `final` (file or directory) once: `build(tmp)` writes a temporary path in
    the same directory, which is then renamed into place under a lock."""
    if os.path.lexists(final):
        return final
    with locked(final):
        if os.path.lexists(final):
            return final
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(final))
        target = os.path.join(tmp, "obj")
        try:
            build(target)
            os.rename(target, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ------------------------------------------------------------------------- images


def image_kind(path: str) -> str:
    """'sandbox' (directory), 'sif', 'squashfs', or 'unknown'."""
    if os.path.isdir(path):
        return "sandbox"
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return "unknown"
    if head[:4] == SQUASHFS_MAGIC:
        return "squashfs"
    if head[32:42] == sif.MAGIC:
        return "sif"
    return "unknown"


def carve_sif(path: str) -> str:
    """Copy the primary system partition of a SIF file to a cached .sqfs file."""
    try:
        offset, size = sif.primary_partition(path)
    except sif.SifError as e:
        raise DoubleError(str(e)) from None
    final = os.path.join(cache_root(), f"sif-{file_key(path)}.sqfs")

    def build(tmp: str) -> None:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            src.seek(offset)
            left = size
            while left:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    raise DoubleError(f"SIF image {path} is truncated")
                dst.write(chunk)
                left -= len(chunk)

    return build_once(final, build)


_LLS = re.compile(
    r"^(?P<perm>\S{10})\s+\S+\s+(?:\d+|\d+,\s*\d+)\s+\d{4}-\d\d-\d\d \d\d:\d\d (?P<rest>.*)$"
)


def squashfs_tree(sqfs: str) -> dict[str, tuple[str, str]]:
    """{guest path: (type, symlink target)} of a SquashFS image, cached as JSON.
    Type is 'd', 'f' (anything else), or 'l'."""
    final = os.path.join(cache_root(), f"tree-{file_key(sqfs)}.json")
    if not os.path.exists(final):
        out = run_quiet([find_tool("unsquashfs"), "-lls", "-d", "", sqfs], f"cannot list {sqfs}")
        tree: dict[str, tuple[str, str]] = {"/": ("d", "")}
        for line in out.splitlines():
            m = _LLS.match(line)
            if not m or not m.group("rest"):
                continue
            perm, rest = m.group("perm"), m.group("rest")
            if perm[0] == "l" and " -> " in rest:
                name, target = rest.split(" -> ", 1)
                tree[name] = ("l", target)
            else:
                tree[rest] = ("d" if perm[0] == "d" else "f", "")

        def build(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(tree, f)

        build_once(final, build)
    with open(final) as f:
        return {k: tuple(v) for k, v in json.load(f).items()}


def _norm(path: str) -> list[str]:
    return [c for c in path.split("/") if c and c != "."]


def resolve(path: str, kind_of, readlink) -> tuple[str | None, str]:
    """Resolve guest `path` inside an image whose entries are described by
    kind_of(p) -> 'd'/'f'/'l'/None and readlink(p); absolute links restart at the
    image root. Returns (type or None if missing, resolved path or the first missing
    path)."""
    todo = _norm(path)
    done: list[str] = []
    hops = 0
    while todo:
        comp = todo.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        cur = "/" + "/".join([*done, comp])
        kind = kind_of(cur)
        if kind is None:
            return None, cur
        if kind == "l":
            hops += 1
            if hops > 40:
                return None, cur
            target = readlink(cur)
            todo = _norm(target) + todo
            if target.startswith("/"):
                done = []
            continue
        if kind != "d" and todo:
            return None, cur
        done.append(comp)
    return kind_of("/" + "/".join(done)) if done else "d", "/" + "/".join(done)


def tree_resolver(tree: dict[str, tuple[str, str]]):
    return (lambda p: tree.get(p, (None, ""))[0]), (lambda p: tree[p][1])


def dir_resolver(root: str):
    def kind_of(p: str):
        try:
            st = os.lstat(root + p)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return "l"
        return "d" if stat.S_ISDIR(st.st_mode) else "f"

    return kind_of, (lambda p: os.readlink(root + p))


def unpack(sqfs: str, offset: int = 0) -> str:
    """Extract a SquashFS image once into a cached directory."""
    final = os.path.join(cache_root(), f"unpacked-{file_key(sqfs)}-{offset}")

    def build(tmp: str) -> None:
        argv = [find_tool("unsquashfs"), "-no-progress", "-quiet", "-no-xattrs", "-d", tmp]
        if offset:
            argv += ["-o", str(offset)]
        run_quiet([*argv, sqfs], f"cannot extract {sqfs}")

    return build_once(final, build)


def create_mountpoint(root: str, guest: str, want_dir: bool) -> None:
    """Create guest path `guest` (and missing parents) inside directory image `root`,
    following the image's own symlinks (absolute ones re-rooted) and never leaving it."""
    kind_of, readlink = dir_resolver(root)
    todo = _norm(guest)
    done: list[str] = []
    hops = 0
    while todo:
        comp = todo.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        cur = "/" + "/".join([*done, comp])
        kind = kind_of(cur)
        if kind is None:
            try:
                if todo or want_dir:
                    os.mkdir(root + cur, 0o755)
                else:
                    os.close(os.open(root + cur, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                pass
            except OSError as e:
                raise DoubleError(f"cannot create mount point {guest}: {e.strerror}") from None
            kind = kind_of(cur)
        if kind == "l":
            hops += 1
            if hops > 40:
                raise DoubleError(f"cannot create mount point {guest}: too many symlinks")
            target = readlink(cur)
            todo = _norm(target) + todo
            if target.startswith("/"):
                done = []
            continue
        if kind != "d" and todo:
            raise DoubleError(f"cannot create mount point {guest}: {cur} is not a directory")
        done.append(comp)


def prepare_rootfs(
    image: str, kind: str, mountpoints: list[tuple[str, bool]], sandbox_ok: bool = False
) -> str:
    """Return what to hand to ch-run for `image` so that every guest path in
    `mountpoints` ((path, is_dir) pairs) exists in it.

    ch-run can only bind onto destinations that already exist in a read-only image.
    The real runtimes create missing mount points (Apptainer's underlay/overlay,
    enroot's x-create). So: if all destinations exist, the SquashFS file itself is used;
    otherwise the image is extracted once into the cache and the missing mount points
    are created in that copy. A user's sandbox directory is never modified unless
    `sandbox_ok`."""
    if kind == "sandbox":
        kind_of, readlink = dir_resolver(image)
    else:
        kind_of, readlink = tree_resolver(squashfs_tree(image))
    missing = [(p, d) for p, d in mountpoints if resolve(p, kind_of, readlink)[0] is None]
    if not missing:
        return image
    if kind == "sandbox":
        if not sandbox_ok:
            raise DoubleError(
                f"mount point {missing[0][0]} does not exist in sandbox image {image} (the "
                "slurmc test double cannot create it without modifying the directory)"
            )
        root = image
    else:
        root = unpack(image)
    for p, d in missing:
        create_mountpoint(root, p, d)
    return root


def read_image_file(image: str, kind: str, guest: str) -> str | None:
    """Text of a file inside an image (SquashFS via `unsquashfs -cat`), or None."""
    if kind == "sandbox":
        kind_of, readlink = dir_resolver(image)
    else:
        kind_of, readlink = tree_resolver(squashfs_tree(image))
    t, real = resolve(guest, kind_of, readlink)
    if t != "f":
        return None
    if kind == "sandbox":
        with open(image + real, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    p = subprocess.run(
        [find_tool("unsquashfs"), "-cat", image, real.lstrip("/")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    return p.stdout.decode("utf-8", "surrogateescape") if p.returncode == 0 else None


def guest_exists(image: str, kind: str, guest: str) -> str | None:
    if kind == "sandbox":
        kind_of, readlink = dir_resolver(image)
    else:
        kind_of, readlink = tree_resolver(squashfs_tree(image))
    return resolve(guest, kind_of, readlink)[0]


def is_under(path: str, top: str) -> bool:
    path, top = os.path.normpath(path), os.path.normpath(top)
    return top == "/" or path == top or path.startswith(top + "/")


# ------------------------------------------------------------------ registry pulls


def ch_image_storage(env: dict[str, str]) -> str:
    """ch-image storage for the doubles. Not /var/tmp/$USER.ch: ch-run creates its
    SquashFS mount point there, and ch-image rejects a storage directory it did not
    create itself (FIELD-NOTES section 1)."""
    return env.get("CH_IMAGE_STORAGE") or os.path.join(cache_root(), "ch-image")


def pull_to_dir(
    ref: str,
    outdir: str,
    tls_no_verify: bool = False,
    arch: str | None = None,
    login: tuple[str, str] | None = None,
) -> dict:
    """`ch-image pull REF` then `ch-convert -o dir REF OUTDIR`; return the image
    metadata ch-image recorded (/ch/metadata.json: env, cwd, labels, volumes...).

    REF is a ch-image reference: [HOST[:PORT]/]PATH[:TAG|@sha256:DIGEST]. ch-image
    only talks HTTPS; for a registry with a self-signed certificate export
    REQUESTS_CA_BUNDLE (it uses python-requests), or pass tls_no_verify."""
    env = ch_image_env(dict(os.environ))
    env["CH_IMAGE_STORAGE"] = ch_image_storage(env)
    ch_image = find_tool("ch-image")
    # no build cache: it commits with git, which fails where git has no identity
    # (a fresh machine: "git commit ... code 128"), and a pull gains nothing from it
    argv = [ch_image, "--no-cache"]
    if tls_no_verify:
        argv.append("--tls-no-verify")
    if arch:
        argv += ["--arch", arch]
    if login is not None:  # the variables ch-image reads with --auth (never argv)
        argv.append("--auth")
        env["CH_IMAGE_USERNAME"], env["CH_IMAGE_PASSWORD"] = login
    run_quiet([*argv, "pull", ref], f"while pulling {ref}", env=env)
    run_quiet(
        [find_tool("ch-convert"), "-i", "ch-image", "-o", "dir", ref, outdir],
        f"while converting {ref}",
        env=env,
    )
    try:
        with open(os.path.join(outdir, "ch", "metadata.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def mksquashfs(srcdir: str, out: str, options: list[str] | None = None) -> None:
    run_quiet(
        [
            find_tool("mksquashfs"),
            srcdir,
            out,
            "-noappend",
            "-no-progress",
            "-quiet",
            *(options or []),
        ],
        f"while creating {out}",
    )


# ------------------------------------------------- read-only binds and namespaces

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def namespace_wrapper(
    binds: list[tuple[str, str, bool]], unshare: tuple[str, ...] = ()
) -> tuple[list[str], list[tuple[str, str]]]:
    """What ch-run lacks: read-only binds and new net/ipc/uts namespaces.

    ch-run 0.31 has no read-only bind. Each read-only source is bound onto a view in a
    tmpfs and remounted read-only there, inside a private mount namespace made with
    `unshare` (as root; otherwise in a user namespace of its own); ch-run then binds the
    view, and a bind of a read-only mount stays read-only. `unshare` execs, so the
    command stays the process the caller started (exit statuses and signals pass).
    Returns (argv prefix, binds for ch-run)."""
    ro = [b for b in binds if b[2]]
    if not ro and not unshare:
        return [], [(s, d) for s, d, _ in binds]
    views = os.path.join(cache_root(), "ro-views")  # stays empty: the tmpfs is private
    os.makedirs(views, exist_ok=True)
    script = ["set -e"]
    if ro:
        script.append('mount -t tmpfs slurmc-ro-views "$0"')
    args: list[str] = []
    out: list[tuple[str, str]] = []
    for src, dst, read_only in binds:
        if not read_only:
            out.append((src, dst))
            continue
        args.append(src)
        n = len(args)
        script.append(('mkdir "$0/%d"' if os.path.isdir(src) else ': > "$0/%d"') % n)
        script.append(f'mount --bind "${{{n}}}" "$0/{n}"')
        script.append(f'mount -o remount,bind,ro "$0/{n}"')
        out.append((f"{views}/{n}", dst))
    script.append(f'shift {len(args)}; exec "$@"')
    prefix = [find_tool("unshare"), "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    prefix += [f"--{ns}" for ns in unshare]
    return [*prefix, "/bin/sh", "-c", "\n".join(script), views, *args], out
