#!/usr/bin/env python3
"""Step-side half of the Pyxis double: runs as the task of a real Slurm job step.

    pyxis_exec.py SPEC_JSON COMMAND [ARG...]

SPEC_JSON is what bin/srun parsed from the Pyxis options. This does what pyxis does in
slurmstepd (pyxis_slurmstepd.c), with enroot's and Charliecloud's tools:
  * the image: a path (starts with '.' or '/') to a SquashFS file, or a registry
    reference [USER@][REGISTRY#]IMAGE[:TAG] imported with the enroot double
    (`enroot import docker://REF`, cached per reference under
    ${TMPDIR:-/tmp}/slurmc-doubles);
  * --container-name: a named container pyxis_NAME under $ENROOT_DATA_PATH, created with
    `enroot create` and reused afterwards (flags auto/create/exec/no_exec);
  * mounts (-b), workdir (-c; default: the image's WORKDIR from /etc/rc, else /), the
    environment (task environment, the image's /etc/environment taking precedence
    except for --container-env names), --container-remap-root (--uid=0 --gid=0),
    --container-writable / --container-save (on a private copy of the root filesystem).
Errors are printed as slurmstepd prints Pyxis errors and the task exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import _common as C


class StepError(Exception):
    pass


def fail(*lines: str):
    raise StepError("\n".join(lines))


def enroot(args: list[str], spec: dict) -> None:
    p = subprocess.run(
        [spec["python"], os.path.join(C.BIN_DIR, "enroot"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        fail(
            "pyxis: failed to import docker image"
            if args[0] == "import"
            else "pyxis: failed to create container filesystem",
            "pyxis: printing enroot log file:",
            *[f"pyxis:     {ln}" for ln in lines[-5:]],
            "pyxis: couldn't start container",
        )


def import_image(image: str, spec: dict) -> str:
    """SquashFS file for --container-image: a path, or a registry reference imported
    once per reference through the enroot double."""
    if image[0] in "./":
        path = os.path.abspath(image)
        if not os.path.isfile(path) or C.image_kind(path) != "squashfs":
            why = "Invalid image format" if os.path.isfile(path) else "No such file or directory"
            fail(
                "pyxis: container start failed with error code: 1",
                "pyxis: printing enroot log file:",
                f"pyxis:     [ERROR] {why}: {path}",
                "pyxis: couldn't start container",
            )
        return path
    # Pyxis passes docker:// and dockerd:// URIs through as they are (enroot.c)
    uri = image if image.startswith(("docker://", "dockerd://")) else "docker://" + image
    final = os.path.join(
        C.cache_root(), "pyxis-" + hashlib.sha256(uri.encode()).hexdigest()[:24] + ".sqsh"
    )
    if not os.path.exists(final):
        with C.locked(final):
            if not os.path.exists(final):
                print(f"pyxis: importing docker image: {image}", file=sys.stderr)
                tmp = final + f".{os.getpid()}.sqsh"
                try:
                    enroot(["import", "--output", tmp, uri], spec)
                    os.replace(tmp, final)
                    print(f"pyxis: imported docker image: {image}", file=sys.stderr)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
    return final


def data_path() -> str:
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return os.environ.get("ENROOT_DATA_PATH") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local/share"), "enroot"
    )


def image_workdir(root: str, kind: str) -> str:
    rc = C.read_image_file(root, kind, "/etc/rc") or ""
    m = re.search(r"^cd (?:'([^']*)'|\"([^\"]*)\"|(\S+))", rc, re.M)
    return (m.group(1) or m.group(2) or m.group(3)) if m else "/"


def check_mount_sources(spec: dict) -> None:
    """Pyxis 0.24's validate_mount_sources: absolute sources must exist (ENOENT/ENOTDIR)."""
    for m in spec.get("mounts") or []:
        src = m["source"]
        if not src.startswith("/"):
            continue
        try:
            os.stat(src)
        except (FileNotFoundError, NotADirectoryError):
            fail(
                f"pyxis: --container-mounts: source path does not exist: {src}",
                "pyxis: couldn't start container",
            )
        except OSError:
            pass  # enroot tries the mount and reports its own error


def find_command(root: str, kind: str, argv0: str, path: str) -> bool:
    """Whether execve/execvp of argv0 inside the image would find a file."""
    if "/" in argv0:
        return C.guest_exists(root, kind, argv0) == "f"
    return any(
        C.guest_exists(root, kind, os.path.join(d or ".", argv0)) == "f"
        for d in path.split(":")
        if d.startswith("/")
    )


def run(spec: dict, command: list[str]) -> int:
    check_mount_sources(spec)
    cwd = os.getcwd()
    cleanup: list[str] = []
    save_from = None
    name = spec.get("name")
    writable = spec.get("writable") == 1
    kind = "squashfs"
    root = None
    if name:
        if "/" in name:
            fail(
                "pyxis: failed to create container filesystem",
                "pyxis: printing enroot log file:",
                f"pyxis:     [ERROR] Invalid argument: pyxis_{name}",
                "pyxis: couldn't start container",
            )
        cdir = os.path.join(data_path(), f"pyxis_{name}")
        with C.locked(
            os.path.join(
                C.cache_root(),
                "pyxis-name-"
                + hashlib.sha256(cdir.encode("utf-8", "surrogateescape")).hexdigest()[:24],
            )
        ):
            if os.path.isdir(cdir):
                if spec.get("name_flags") == "create":
                    fail(
                        f"pyxis: error: a container with name {name} already exists",
                        "pyxis: couldn't start container",
                    )
            else:
                if not spec.get("image"):
                    fail(
                        f"pyxis: error: a container with name {name} does not exist, and "
                        "--container-image is not set",
                        "pyxis: couldn't start container",
                    )
                sqsh = import_image(spec["image"], spec)
                enroot(["create", "--name", f"pyxis_{name}", sqsh], spec)
        root, kind = cdir, "sandbox"
        save_from = cdir
    else:
        if not spec.get("image"):
            fail("pyxis: error: no container image", "pyxis: couldn't start container")
        sqsh = import_image(spec["image"], spec)
        if writable or spec.get("save"):
            tmp = tempfile.mkdtemp(prefix="pyxis-rootfs.", dir=C.cache_root())
            cleanup.append(tmp)
            root = os.path.join(tmp, "rootfs")
            C.run_quiet(
                [
                    C.find_tool("unsquashfs"),
                    "-no-progress",
                    "-quiet",
                    "-no-xattrs",
                    "-d",
                    root,
                    sqsh,
                ],
                "pyxis: couldn't extract image",
            )
            kind, save_from = "sandbox", root
            writable = True
        else:
            root = sqsh

    # mounts: SRC:DST[:FLAGS] with enroot's x-create=auto default for paths
    binds: list[tuple[str, str, bool]] = []
    mountpoints: list[tuple[str, bool]] = []
    home = os.environ.get("HOME")
    mounts = list(spec.get("mounts") or [])
    if spec.get("mount_home") == 1 and home:
        mounts.insert(0, {"source": home, "target": home, "flags": "x-create=auto,rbind"})
    for m in mounts:
        src, dst, flags = m["source"], m["target"], m["flags"].split(",")
        rel = os.path.normpath(dst).lstrip("/")
        guest = "/" + ("" if rel == "." else rel)  # relative targets: from the image root
        if src == "umount":
            continue  # x-detach of an existing mount: nothing to detach here
        if src == "tmpfs":
            src = tempfile.mkdtemp(prefix="pyxis-tmpfs.", dir=C.cache_root())
            cleanup.append(src)
        else:
            src = os.path.abspath(os.path.join(cwd, src))
        if not os.path.exists(src):
            fail(
                "pyxis: container start failed with error code: 1",
                "pyxis: printing enroot log file:",
                f"pyxis:     enroot-mount: failed to mount: {src} at {guest}: "
                "No such file or directory",
                "pyxis: couldn't start container",
            )
        mountpoints.append((guest, os.path.isdir(src)))
        binds.append((src, guest, "ro" in flags))  # enforced by C.namespace_wrapper
    try:
        if kind == "sandbox":
            for p, d in mountpoints:
                if C.guest_exists(root, kind, p) is None:
                    C.create_mountpoint(root, p, d)
        else:
            root = C.prepare_rootfs(root, kind, mountpoints)
            if not os.path.isdir(root):
                # ch-run 0.31 runs a SquashFS file in a child and exits 1 when that child
                # is killed; on a directory it execs, so 143/137 reach srun as with Pyxis
                root = C.unpack(root)
            kind = "sandbox"
    except C.DoubleError as e:
        fail(
            "pyxis: container start failed with error code: 1",
            f"pyxis:     {e}",
            "pyxis: couldn't start container",
        )

    # environment: the task's, the container's winning except for the names given with
    # --container-env (spank_import_container_env). The container's comes from the image's
    # /etc/environment and always holds PATH: the host's PATH never reaches the container
    # (enroot_deny_env) unless named with --container-env; LANG, LANGUAGE and LC_ALL of
    # the job are dropped unless named (container_deny_env).
    env = {k: v for k, v in os.environ.items()}
    keep = set(spec.get("env_vars") or [])
    for k in ("LANG", "LANGUAGE", "LC_ALL"):
        if k not in keep:
            env.pop(k, None)
    container = {"PATH": C.DEFAULT_PATH}
    for line in (C.read_image_file(root, kind, "/etc/environment") or "").splitlines():
        k, eq, v = line.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            container[k] = v
    for k, v in container.items():
        if k not in keep:
            env[k] = v
    workdir = spec.get("workdir") or image_workdir(root, kind)

    argv_in = list(command)
    if spec.get("entrypoint") == 1 and C.guest_exists(root, kind, "/etc/rc") == "f":
        argv_in = ["/bin/sh", "/etc/rc", *command]
    elif not find_command(root, kind, argv_in[0], env.get("PATH", "")):
        # slurmstepd's own execve fails: exit 2, as real Pyxis
        node = os.environ.get("SLURMD_NODENAME") or os.uname().nodename
        print(
            f"slurmstepd-{node}: error: execve(): {argv_in[0]}: No such file or directory",
            file=sys.stderr,
        )
        return 2
    cargs = [spec["ch_run"], "--private-tmp", f"--cd={workdir}"]
    if writable:
        cargs.append("--write")
    if spec.get("remap_root") == 1:
        cargs += ["--uid=0", "--gid=0"]
    prefix, ch_binds = C.namespace_wrapper(binds, tuple(spec.get("unshare") or ()))
    for src, dst in ch_binds:
        cargs.append(f"--bind={src}:{dst}")
    cargs = [*prefix, *cargs, root, "--", *argv_in]
    env = C.charliecloud_env(env)
    sys.stdout.flush()
    sys.stderr.flush()
    if not cleanup and not spec.get("save"):
        os.execve(cargs[0], cargs, env)
    rc = 0
    try:
        rc = subprocess.run(cargs, env=env).returncode
        if spec.get("save") and save_from and os.environ.get("SLURM_LOCALID", "0") == "0":
            target = os.path.abspath(os.path.join(cwd, spec["save"]))
            tmp = f"{target}.{os.getpid()}.tmp"
            try:
                C.mksquashfs(save_from, tmp, ["-all-root"])
                os.replace(tmp, target)
            except C.DoubleError as e:
                print(f"slurmstepd: error: pyxis: failed to export container {e}", file=sys.stderr)
                rc = rc or 1
        return rc
    finally:
        for p in cleanup:
            shutil.rmtree(p, ignore_errors=True)
        if rc < 0:  # killed: end the same way, so that srun reports 128+N
            signal.signal(-rc, signal.SIG_DFL)
            os.kill(os.getpid(), -rc)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: pyxis_exec.py SPEC_JSON COMMAND [ARG...]", file=sys.stderr)
        return 2
    spec = json.loads(argv[1])
    try:
        return run(spec, argv[2:])
    except (StepError, C.DoubleError) as e:
        for line in str(e).splitlines():
            print(f"slurmstepd: error: {line}", file=sys.stderr)
        return 1
    except Exception as e:  # one line, no traceback (SLURMC_DOUBLE_DEBUG=1 shows it)
        return C.internal_error("slurmstepd: error: pyxis", e)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
