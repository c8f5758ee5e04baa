"""Tests of the container-runtime test doubles in tests/doubles (no slurmc imports).

Markers: `runtime` tests run real containers through Charliecloud's ch-run (skipped
when ch-run or mksquashfs is missing); `cluster` tests need a running Slurm and are
skipped only when SLURM_CONF is not set.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = HERE / "bin"
REPO = HERE.parent.parent
#: sylabs/sif's reference images, from Debian's golang-github-sylabs-sif-dev
#: (scripts/devcluster install); the tests fail, never skip, without them
SIF_FIXTURES = Path("/usr/share/gocode/src/github.com/sylabs/sif/test/images")

sys.path.insert(0, str(HERE))
import fake_apptainer  # noqa: E402
import fake_enroot  # noqa: E402
import fake_srun  # noqa: E402
import sif  # noqa: E402

HAVE_RUNTIME = all(shutil.which(t) for t in ("ch-run", "mksquashfs", "unsquashfs"))
needs_runtime = pytest.mark.skipif(not HAVE_RUNTIME, reason="needs ch-run and squashfs-tools")
needs_cluster = pytest.mark.skipif(
    "SLURM_CONF" not in os.environ, reason="SLURM_CONF not set (scripts/devcluster up)"
)


def needs_fixtures(func):  # type: ignore[no-untyped-def]
    """The reference images must be there: a missing package is a failure, not a skip."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert SIF_FIXTURES.is_dir(), f"{SIF_FIXTURES} missing: run scripts/devcluster install"
        return func(*args, **kwargs)

    return wrapper


# Arguments that must reach the contained command byte for byte.
HOSTILE_ARGS: list[bytes] = [
    b"plain",
    b"two words",
    b"it's",
    b'say "hi"',
    b"$HOME",
    b"${PATH}",
    b"`id`",
    b"$(id)",
    b"a\\b",
    b"back\\\\slash\\",
    b"; echo pwned",
    b"| cat /etc/passwd",
    b"tab\there",
    b"new\nline",
    b"\n#SBATCH --partition=evil",
    b"cr\rreturn",
    b"*",
    b"~",
    b"-",
    b"--",
    b"",
    b"--nv",
    b"-B",
    b"/x:/y",
    "ünïcödé ✓".encode(),
    b"!event",
    b"a'b\"c$d`e\\f",
    b"\xff\xfe not utf-8",
    b"%s %n",
    b" lead",
    b"trail ",
]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def double_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for running the doubles: bin/ first on PATH, a private TMPDIR (the
    doubles' cache lives in $TMPDIR/slurmc-doubles), no inherited double log."""
    tmp = tmp_path_factory.mktemp("doubles-tmp")
    env = dict(os.environ)
    env.pop("SLURMC_DOUBLE_LOG", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["TMPDIR"] = str(tmp)
    env.setdefault("HOME", "/root")
    for k in [k for k in env if k.startswith(("SINGULARITY", "APPTAINER", "PYXIS_"))]:
        del env[k]
    return env


def run(
    tool: str, *args, env: dict | None = None, cwd=None, input=None, timeout: float = 120
) -> subprocess.CompletedProcess:
    argv = [str(BIN / tool), *args]
    return subprocess.run(argv, env=env, cwd=cwd, input=input, capture_output=True, timeout=timeout)


def text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def assert_clean_error(p: subprocess.CompletedProcess, code: int | None, *needles: str):
    err = text(p.stderr)
    assert "Traceback" not in err, err
    if code is None:
        assert p.returncode != 0, err
    else:
        assert p.returncode == code, (p.returncode, err)
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"


@pytest.fixture
def dummy_slurm_conf(tmp_path: Path) -> str:
    """A slurm.conf that lets srun parse its options but reaches no controller."""
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=doubles\nSlurmctldHost=localhost\nSlurmctldPort=1\n"
        "AuthType=auth/munge\nNodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n"
    )
    return str(conf)


# ------------------------------------------------------------------------- test image


def build_rootfs(root: Path) -> None:
    """A tiny image from the host's own binaries: bash, dash, env, cat, ls + their
    libraries, Debian's merged-/usr symlinks, the mount points ch-run needs, and
    Singularity's /.singularity.d (actions/exec sourcing env/*.sh)."""
    root.mkdir(parents=True)
    for d in ("usr/bin", "usr/lib", "usr/lib64", "usr/sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link, target in (
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ):
        (root / link).symlink_to(target)
    files: set[str] = set()
    for tool in ("bash", "sh", "env", "cat", "ls", "true", "mkdir", "id"):
        path = shutil.which(tool, path="/usr/bin:/bin")
        assert path, tool
        files.add(path)
        out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        files.update(re.findall(r"(/\S+)", out))
    for f in sorted(files):
        real = os.path.realpath(f)
        dst = root / real.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            shutil.copy2(real, dst)
        if real != f:
            link = root / f.lstrip("/")
            if not os.path.lexists(link):
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(real)
    for d in (
        "dev",
        "proc",
        "sys",
        "tmp",
        "home",
        "root",
        "etc",
        "var/tmp",
        "mnt",
        "opt/wd",
        ".singularity.d/actions",
        ".singularity.d/env",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    for f in ("etc/hosts", "etc/resolv.conf"):
        (root / f).write_text("")
    (root / "etc/environment").write_text("IMAGE_ENV=from-image-environment\n")
    (root / "etc/rc").write_text("cd '/opt/wd' || exit 1\nexec \"$@\"\n")
    exe = root / ".singularity.d/actions/exec"
    exe.write_text(
        "#!/bin/sh\nfor script in /.singularity.d/env/*.sh; do\n"
        '    if [ -f "$script" ]; then\n        . "$script"\n    fi\ndone\n'
        'exec "$@"\n'
    )
    exe.chmod(0o755)
    (root / ".singularity.d/env/90-environment.sh").write_text(
        'export IMAGE_VAR="from-image"\nexport PATH="/usr/local/bin:/usr/bin:/bin"\n'
    )
    # as images built by Apptainer/SingularityCE: user variables are injected after it
    (root / ".singularity.d/env/99-base.sh").write_text(
        '#!/bin/sh\nLD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/.singularity.d/libs"\n'
        'PS1="Singularity> "\nexport LD_LIBRARY_PATH PS1\n'
    )


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """rootfs/, image.sqfs and image.sif of the tiny test image."""
    if not HAVE_RUNTIME:
        pytest.skip("needs ch-run and squashfs-tools")
    d = tmp_path_factory.mktemp("image")
    build_rootfs(d / "rootfs")
    subprocess.run(
        [
            "mksquashfs",
            str(d / "rootfs"),
            str(d / "image.sqfs"),
            "-noappend",
            "-no-progress",
            "-quiet",
            "-all-root",
        ],
        check=True,
    )
    sif.pack(str(d / "image.sqfs"), str(d / "image.sif"))
    return {"dir": d, "rootfs": d / "rootfs", "sqfs": d / "image.sqfs", "sif": d / "image.sif"}


# ------------------------------------------------------------------------------- SIF


@needs_fixtures
def test_sif_reader_matches_the_reference_listing_of_one_group() -> None:
    path = SIF_FIXTURES / "one-group.sif"
    p = subprocess.run(
        [sys.executable, str(HERE / "sif.py"), "primary", str(path)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["36864", "4096"]
    header, descriptors = sif.load(str(path))
    assert (header["version"], header["arch"], header["dtotal"], header["dfree"]) == (
        "01",
        "386",
        48,
        46,
    )
    assert (header["descroff"], header["dataoff"]) == (4096, 32176)
    got = [
        (
            d["id"],
            d["group"],
            d["fstype"],
            d["parttype"],
            d["arch"],
            d["offset"],
            d["offset"] + d["size"],
        )
        for d in descriptors
    ]
    assert got == [
        (1, 1, "Raw", "System", "386", 32768, 32772),
        (2, 1, "Squashfs", "*System", "386", 36864, 40960),
    ]
    listing = subprocess.run(
        ["unsquashfs", "-l", "-o", "36864", str(path)], capture_output=True, text=True
    )
    assert listing.returncode == 0 and "hello.txt" in listing.stdout


@needs_fixtures
@pytest.mark.parametrize(
    "name", sorted(p.name for p in SIF_FIXTURES.glob("*.sif")) or ["(no reference images)"]
)
def test_sif_reader_reads_every_fixture(name: str) -> None:
    path = SIF_FIXTURES / name
    p = subprocess.run(
        [sys.executable, str(HERE / "sif.py"), "list", str(path)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    size = path.stat().st_size
    assert doc["header"]["dtotal"] - doc["header"]["dfree"] == len(doc["descriptors"])
    for d in doc["descriptors"]:
        assert d["offset"] >= 0 and d["offset"] + d["size"] <= size
    primary = [
        d
        for d in doc["descriptors"]
        if d.get("parttype") == "*System" and d.get("fstype") == "Squashfs"
    ]
    with open(path, "rb") as fh:  # the legacy-signed images hold 0xdeadbeef there
        if primary:
            fh.seek(primary[0]["offset"])
        has_primary = bool(primary) and fh.read(4) == b"hsqs"
    prim = subprocess.run(
        [sys.executable, str(HERE / "sif.py"), "primary", str(path)], capture_output=True, text=True
    )
    assert (prim.returncode == 0) == has_primary, prim.stderr
    if has_primary:
        offset = prim.stdout.split()[0]
        ls = subprocess.run(
            ["unsquashfs", "-l", "-o", offset, str(path)], capture_output=True, text=True
        )
        assert ls.returncode == 0, ls.stderr
    else:
        assert "Traceback" not in prim.stderr and prim.stderr.startswith("sif.py: ")


@needs_fixtures
@pytest.mark.parametrize("keep", [0, 20, 127, 4096 + 300, 32175, 36864 + 100, -1])
def test_sif_reader_rejects_a_truncated_copy(tmp_path: Path, keep: int) -> None:
    data = (SIF_FIXTURES / "one-group.sif").read_bytes()
    cut = tmp_path / "cut.sif"
    cut.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    p = subprocess.run(
        [sys.executable, str(HERE / "sif.py"), "primary", str(cut)], capture_output=True, text=True
    )
    assert p.returncode == 1
    assert p.stderr.startswith("sif.py: ") and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_sif_reader_rejects_a_file_that_is_not_sif(tmp_path: Path) -> None:
    f = tmp_path / "x.sif"
    f.write_bytes(b"#!/bin/sh\necho not a sif\n" * 20)
    p = subprocess.run(
        [sys.executable, str(HERE / "sif.py"), "primary", str(f)], capture_output=True, text=True
    )
    assert p.returncode == 1 and "invalid SIF magic" in p.stderr


@pytest.mark.skipif(not shutil.which("mksquashfs"), reason="needs squashfs-tools")
def test_sif_writer_output_is_read_back_and_lists_with_unsquashfs(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "hello.txt").write_text("hi\n")
    sqfs, out = tmp_path / "a.sqfs", tmp_path / "a.sif"
    subprocess.run(
        ["mksquashfs", str(tmp_path / "d"), str(sqfs), "-noappend", "-quiet", "-no-progress"],
        check=True,
    )
    p = subprocess.run(
        [sys.executable, str(HERE / "sif.py"), "pack", str(sqfs), str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    offset, size = sif.primary_partition(str(out))
    assert size == sqfs.stat().st_size and offset % 4096 == 0
    assert out.read_bytes()[offset : offset + size] == sqfs.read_bytes()
    header, descriptors = sif.load(str(out))
    assert (header["descroff"], header["dtotal"], header["dfree"]) == (4096, 48, 47)
    assert header["dataoff"] == 4096 + 48 * 585 and header["launch"].startswith("#!")
    assert descriptors[0]["fstype"] == "Squashfs" and descriptors[0]["parttype"] == "*System"
    if os.uname().machine == "x86_64":
        assert header["arch"] == "amd64" == descriptors[0]["arch"]
    assert re.fullmatch(r"[0-9a-f-]{36}", header["id"]) and header["id"] != "0" * 8 + "-"
    ls = subprocess.run(
        ["unsquashfs", "-l", "-o", str(offset), str(out)], capture_output=True, text=True
    )
    assert ls.returncode == 0 and "hello.txt" in ls.stdout


# ------------------------------------------------------- Apptainer/Singularity grammar


@pytest.mark.parametrize(
    "prog,long_version,short_version",
    [
        ("singularity", "singularity-ce version 4.1.0-slurmc-double", "4.1.0-slurmc-double"),
        ("apptainer", "apptainer version 1.3.0-slurmc-double", "1.3.0-slurmc-double"),
    ],
)
def test_version(double_env, prog, long_version, short_version) -> None:
    assert text(run(prog, "--version", env=double_env).stdout).strip() == long_version
    assert text(run(prog, "version", env=double_env).stdout).strip() == short_version


@pytest.mark.parametrize("prog", ["singularity", "apptainer"])
@pytest.mark.parametrize(
    "args,code,message",
    [
        (["exec", "--bogus", "img", "true"], 1, 'Error for command "exec": unknown flag: --bogus'),
        (["exec", "-z", "img", "true"], 1, "unknown shorthand flag: 'z' in -z"),
        (["exec", "-eZ", "img", "true"], 1, "unknown shorthand flag: 'Z' in -eZ"),
        (["exec", "--bind"], 1, "flag needs an argument: --bind"),
        (["exec", "-B"], 1, "flag needs an argument: 'B' in -B"),
        (
            ["exec", "--env", "NOEQUALS", "img", "true"],
            1,
            'invalid argument "NOEQUALS" for "--env" flag: NOEQUALS must be formatted as key=value',
        ),
        (
            ["exec", "--pids-limit", "x", "img", "true"],
            1,
            'invalid argument "x" for "--pids-limit"',
        ),
        (["exec", "--nv=maybe", "img", "true"], 1, 'invalid argument "maybe" for "--nv" flag'),
        (["exec", "img"], 1, "requires at least 2 arg(s), only received 1"),
        (["shellz"], 1, 'unknown command "shellz"'),
        (["pull", "a", "b", "c"], 1, "accepts between 1 and 2 arg(s), received 3"),
        (["pull", "--bogus", "docker://x"], 1, "unknown flag: --bogus"),
        (["pull", "out.sif", "library://a/b/c"], 255, "Unsupported transport type: library"),
        (
            ["exec", "/no/such/image.sif", "true"],
            255,
            "could not open image /no/such/image.sif: failed to retrieve path for "
            "/no/such/image.sif: lstat /no/such/image.sif: no such file or directory",
        ),
    ],
)
def test_exec_and_pull_reject_bad_input(double_env, tmp_path, prog, args, code, message):
    p = run(prog, *args, env=double_env, cwd=tmp_path)
    assert_clean_error(p, code, message)
    if code == 1:
        assert f"Run '{prog} --help' for more detailed usage information." in text(p.stderr)


def test_exec_rejects_a_file_that_is_no_image(double_env, tmp_path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello\n" * 100)
    p = run("apptainer", "exec", str(f), "true", env=double_env)
    assert_clean_error(p, 255, f"could not open image {f}: image format not recognized")


def test_pull_will_not_overwrite_without_force(double_env, tmp_path) -> None:
    (tmp_path / "x.sif").write_text("old")
    p = run(
        "singularity", "pull", "x.sif", "docker://127.0.0.1:1/x:1", env=double_env, cwd=tmp_path
    )
    assert_clean_error(p, 255, 'FATAL:   Image file already exists: "x.sif" - will not overwrite')
    assert (tmp_path / "x.sif").read_text() == "old"


@needs_fixtures
@pytest.mark.parametrize(
    "bind,message",
    [
        (
            "{tmp}:/x:bogus",
            "while parsing bind path: while getting bind path: bogus is not a valid bind option",
        ),
        (
            "{tmp}:/x:ro,{tmp}:/y:nosuchopt",
            "while getting bind path: nosuchopt is not a valid bind option",
        ),
        (
            "/no/such/dir:/x",
            "FATAL:   container creation failed: mount hook function failure: "
            "mount /no/such/dir->/x error: while mounting /no/such/dir: mount "
            "source /no/such/dir doesn't exist",
        ),
        (
            "{tmp}/missing.sqsh:/user-software:image-src=/",
            "mount source {tmp}/missing.sqsh doesn't exist",
        ),
    ],
)
@pytest.mark.parametrize(
    "prog,how",
    [("singularity", "flag"), ("singularity", "env"), ("apptainer", "flag"), ("apptainer", "env")],
)
def test_exec_rejects_bad_binds(double_env, tmp_path, bind, message, prog, how) -> None:
    spec = bind.format(tmp=tmp_path)
    env = dict(double_env)
    args = ["exec", str(SIF_FIXTURES / "one-group.sif"), "true"]
    if how == "flag":
        args[1:1] = ["-B", spec]
    else:
        env[f"{prog.upper()}_BIND"] = spec
    p = run(prog, *args, env=env)
    assert_clean_error(p, 255, message.format(tmp=tmp_path))


@pytest.mark.parametrize("prog", ["apptainer", "singularity"])
@pytest.mark.parametrize(
    "specs,expected",
    [
        (["/a"], [("/a", "/a", {})]),
        (["/a:/b"], [("/a", "/b", {})]),
        (["/a:/b:ro"], [("/a", "/b", {"ro": ""})]),
        (["/a:/b:ro,/c:/d"], [("/a", "/b", {"ro": ""}), ("/c", "/d", {})]),
        (["/a,/c"], [("/a", "/a", {}), ("/c", "/c", {})]),
        (
            ["env.sqsh:/user-software:image-src=/"],
            [("env.sqsh", "/user-software", {"image-src": "/"})],
        ),
        (
            ["/a:/b:ro,image-src=/x,/c"],
            [("/a", "/b", {"ro": "", "image-src": "/x"}), ("/c", "/c", {})],
        ),
        (
            ["/opt:/other:ro,rw,/tmp:/other2:ro,rw"],
            [("/opt", "/other", {"ro": "", "rw": ""}), ("/tmp", "/other2", {"ro": "", "rw": ""})],
        ),
        (["/opt:/other,/tmp:/other2,"], [("/opt", "/other", {}), ("/tmp", "/other2", {})]),
        (["t.sif:/o:image-src=/opt,id=2"], [("t.sif", "/o", {"image-src": "/opt", "id": "2"})]),
        (["/x:/y:rw", "/z"], [("/x", "/y", {"rw": ""}), ("/z", "/z", {})]),
        # upstream quirks, kept: spaces are trimmed around tokens only, and a leading ':'
        # is skipped by the tokenizer; a non-option after the options starts a new bind
        ([" /a : /b "], [("/a ", "/b", {})]),
        ([":/b"], [("/b", "/b", {})]),
        (["/a:/b:ro,bad=1"], [("/a", "/b", {"ro": ""}), ("bad=1", "bad=1", {})]),
    ],
)
def test_bind_spec_parser_follows_upstream(prog, specs, expected) -> None:
    got = [
        (b["source"], b["destination"], b["options"])
        for b in fake_apptainer.parse_bind_paths(specs, prog)
    ]
    assert got == expected


def test_bind_spec_escapes_are_apptainer_only() -> None:
    assert [
        (b["source"], b["destination"])
        for b in fake_apptainer.parse_bind_paths(["/a\\,b:/c"], "apptainer")
    ] == [("/a,b", "/c")]
    assert [
        (b["source"], b["destination"])
        for b in fake_apptainer.parse_bind_paths(["/a\\,b:/c"], "singularity")
    ] == [("/a\\", "/a\\"), ("b", "/c")]


@pytest.mark.parametrize(
    "prog,spec,message",
    [
        ("apptainer", "/a:/b:bogus", "while getting bind path: bogus is not a valid bind option"),
        ("singularity", "/a:/b:bogus", "while getting bind path: bogus is not a valid bind option"),
        ("apptainer", "t.sif:/o:image-src", "image-src is not a valid bind option"),
        ("apptainer", "/a:/b:ro,/c:/d:nosuch", "nosuch is not a valid bind option"),
        ("singularity", "/a:/b:ro,/c:/d:nosuch", "nosuch is not a valid bind option"),
        ("apptainer", "/opt:/other:rw:invalid", 'bad bind syntax "/opt:/other:rw:"'),
        ("singularity", "/opt:/other:rw:invalid", "wrong bind syntax: /opt:/other:rw:"),
        ("apptainer", "/a:/b:archive-src=/", "archive-src=/ is not a valid bind option"),
        ("singularity", "/a:/b:archive-src=/", "archive-src=/ is not a valid bind option"),
    ],
)
def test_bind_spec_parser_rejects(prog, spec, message) -> None:
    if message is None:
        assert fake_apptainer.parse_bind_paths([spec], prog)
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        fake_apptainer.parse_bind_paths([spec], prog)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("A=1", {"A": "1"}),
        ("A=1,2", {"A": "1,2"}),
        ("A=1,B=2", {"A": "1", "B": "2"}),
        ("A=", {"A": ""}),
        ('"A=x"', {"A": "x"}),
        ("A=x=y", {"A": "x=y"}),
        ('A="x"', {"A": '"x'}),  # strings.Trim(val, `"`) trims the whole "K=V" only
    ],
)
def test_env_flag_is_a_pflag_string_to_string(value, expected) -> None:
    assert fake_apptainer.string_to_string(value) == expected


def test_flag_parser_grammar() -> None:
    table = {**fake_apptainer.GLOBAL_FLAGS, **fake_apptainer.ACTION_FLAGS}
    values, pos = fake_apptainer.parse_flags(
        [
            "-eC",
            "-B/a:/b",
            "--bind",
            "/c",
            "--bind=/d",
            "--nv",
            "--rocm=false",
            "--env",
            "X=1",
            "img.sif",
            "cmd",
            "--nv",
            "-B",
            "x",
        ],
        table,
        interspersed=False,
    )
    assert values["cleanenv"] and values["containall"] and values["nv"]
    assert values["rocm"] is False
    assert values["bind"] == ["/a:/b", "/c", "/d"] and values["env"] == {"X": "1"}
    assert pos == ["img.sif", "cmd", "--nv", "-B", "x"]
    values, pos = fake_apptainer.parse_flags(["--", "-img", "cmd"], table, False)
    assert values == {} and pos == ["-img", "cmd"]


def test_invocation_log_records_argv(double_env, tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    env = dict(double_env, SLURMC_DOUBLE_LOG=str(log))
    args = ["exec", "--nv", "--rocm", "-B", "/a:/b", "/no/such.sif", "cmd", "a b", "$X"]
    run("singularity", *args, env=env, cwd=tmp_path)
    run("apptainer", "version", env=env, cwd=tmp_path)
    run("enroot", "version", env=env, cwd=tmp_path)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["tool"] for r in lines] == ["singularity", "apptainer", "enroot"]
    assert lines[0]["argv"] == args and lines[0]["cwd"] == str(tmp_path)
    assert all(isinstance(r["pid"], int) for r in lines)


# ---------------------------------------------------------------------- enroot grammar


def test_enroot_version(double_env) -> None:
    assert text(run("enroot", "version", env=double_env).stdout).strip() == "4.1.2-slurmc-double"


@pytest.mark.parametrize(
    "args,usage",
    [
        (["create", "--bogus", "x.sqsh"], "Usage: enroot create"),
        (["create"], "Usage: enroot create"),
        (["create", "-n"], "Usage: enroot create"),
        (["import", "-x", "docker://a"], "Usage: enroot import"),
        (["import"], "Usage: enroot import"),
        (["import", "--output="], "Usage: enroot import"),
        (["start", "--mount"], "Usage: enroot start"),
        (["start", "--bogus", "name"], "Usage: enroot start"),
        (["list", "-x"], "Usage: enroot list"),
        (["remove"], "Usage: enroot remove"),
        (["remove", "--now", "x"], "Usage: enroot remove"),
        (["frobnicate"], "Usage: enroot COMMAND"),
        ([], "Usage: enroot COMMAND"),
    ],
)
def test_enroot_rejects_invalid_options(double_env, tmp_path, args, usage) -> None:
    env = dict(double_env, ENROOT_DATA_PATH=str(tmp_path / "data"))
    assert_clean_error(run("enroot", *args, env=env, cwd=tmp_path), 1, usage)


@pytest.mark.parametrize(
    "args,message",
    [
        (["create", "/no/such.sqsh"], "[ERROR] No such file or directory: /no/such.sqsh"),
        (["create", "{tmp}/text.sqsh"], "[ERROR] Invalid image format: {tmp}/text.sqsh"),
        (["start", "nosuch"], "[ERROR] No such file or directory: {tmp}/data/nosuch"),
        (["start", "a/b"], "[ERROR] Invalid argument: a/b"),
        (["remove", "-f", "nosuch"], "[ERROR] No such file or directory: {tmp}/data/nosuch"),
        (["import", "docker://Upper/Case"], "[ERROR] Invalid image reference: docker://Upper/Case"),
        (["import", "oras://a/b"], "[ERROR] Invalid argument: oras://a/b"),
    ],
)
def test_enroot_errors(double_env, tmp_path, args, message) -> None:
    (tmp_path / "text.sqsh").write_text("not squashfs\n" * 10)
    env = dict(double_env, ENROOT_DATA_PATH=str(tmp_path / "data"))
    args = [a.format(tmp=tmp_path) for a in args]
    assert_clean_error(run("enroot", *args, env=env, cwd=tmp_path), 1, message.format(tmp=tmp_path))


@pytest.mark.parametrize(
    "uri,parsed,name",
    [
        (
            "docker://ubuntu:18.04",
            ("", "registry-1.docker.io", "library/ubuntu", "18.04"),
            "ubuntu+18.04.sqsh",
        ),
        (
            "docker://alpine",
            ("", "registry-1.docker.io", "library/alpine", "latest"),
            "alpine+latest.sqsh",
        ),
        (
            "docker://nvcr.io#nvidia/cuda:12.9.1-devel-ubuntu24.04",
            ("", "nvcr.io", "nvidia/cuda", "12.9.1-devel-ubuntu24.04"),
            "nvidia+cuda+12.9.1-devel-ubuntu24.04.sqsh",
        ),
        (
            "docker://$oauthtoken@nvcr.io#nvidia/tensorflow:19.01-py3",
            ("$oauthtoken", "nvcr.io", "nvidia/tensorflow", "19.01-py3"),
            "nvidia+tensorflow+19.01-py3.sqsh",
        ),
        (
            "docker://nvidia/cuda:10.0-devel",
            ("", "registry-1.docker.io", "nvidia/cuda", "10.0-devel"),
            "nvidia+cuda+10.0-devel.sqsh",
        ),
        (
            "docker://127.0.0.1:5443/slurmc/test:plain",
            ("", "127.0.0.1:5443", "slurmc/test", "plain"),
            "slurmc+test+plain.sqsh",
        ),
        (
            "docker://127.0.0.1:5443#slurmc/test",
            ("", "127.0.0.1:5443", "slurmc/test", "latest"),
            "slurmc+test+latest.sqsh",
        ),
        (
            "docker://ubuntu@sha256:abc123",
            ("", "registry-1.docker.io", "library/ubuntu", "sha256:abc123"),
            "ubuntu+sha256:abc123.sqsh",
        ),
    ],
)
def test_enroot_uri_grammar_and_default_name(uri, parsed, name) -> None:
    assert fake_enroot.parse_uri(uri) == parsed
    assert fake_enroot.default_image_name(*parsed[1:]) == name


def test_enroot_start_checks_mounts_and_env(double_env, tmp_path) -> None:
    data = tmp_path / "data"
    (data / "c").mkdir(parents=True)
    env = dict(double_env, ENROOT_DATA_PATH=str(data))
    assert_clean_error(
        run("enroot", "start", "--mount", "a b:/x", "c", "true", env=env),
        1,
        "[ERROR] Invalid argument: a b:/x",
    )
    assert_clean_error(  # -m SRC is fine (mounted at the same path); SRC must exist
        run("enroot", "start", "--mount", "nocolon", "c", "true", env=env),
        1,
        "enroot-mount: failed to mount:",
        "nocolon: No such file or directory",
    )
    assert_clean_error(
        run("enroot", "start", "-e", "1BAD=x", "c", "true", env=env),
        1,
        "[ERROR] Invalid argument: 1BAD=x",
    )


# ------------------------------------------------------------------------ srun grammar


@pytest.mark.parametrize(
    "args,keep,pyxis,command",
    [
        (
            ["-n2", "--container-image=img", "cmd", "-n", "3"],
            ["-n2"],
            [("container-image", "img")],
            ["cmd", "-n", "3"],
        ),
        (
            ["-n", "2", "--container-image", "img", "--", "--cmd"],
            ["-n", "2"],
            [("container-image", "img")],
            ["--cmd"],
        ),
        (
            ["-lN1", "--container-mounts=/a:/b", "--container-i", "x", "c"],
            ["-lN1"],
            [("container-mounts", "/a:/b"), ("container-image", "x")],
            ["c"],
        ),
        (
            ["--mem", "1G", "--container-writable", "--exclusive", "c"],
            ["--mem", "1G", "--exclusive"],
            [("container-writable", None)],
            ["c"],
        ),
        (
            ["-I", "--container", "/oci/bundle", "c"],
            ["-I", "--container", "/oci/bundle"],
            [],
            ["c"],
        ),
        (
            ["--export=ALL,X=1", "--container-env=X", "-K1", "c"],
            ["--export=ALL,X=1", "-K1"],
            [("container-env", "X")],
            ["c"],
        ),
    ],
)
def test_srun_splits_argv_like_getopt_long(args, keep, pyxis, command) -> None:
    assert fake_srun.getopt(args) == (keep, pyxis, command)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--container-foo", "true"], "srun: unrecognized option '--container-foo'"),
        (["--container-foo=1", "true"], "srun: unrecognized option '--container-foo=1'"),
        (["--contai=x", "true"], "srun: option '--contai=x' is ambiguous; possibilities:"),
        (
            ["--container-writable=1", "true"],
            "srun: option '--container-writable' doesn't allow an argument",
        ),
        (["--container-image"], "srun: option '--container-image' requires an argument"),
        (
            ["--container-image=", "true"],
            "srun: error: pyxis: --container-image: argument "
            "required\nsrun: error: Invalid --container-image argument:",
        ),
        (
            ["--container-image=a", "--container-image=b", "true"],
            "srun: error: pyxis: --container-image specified multiple times",
        ),
        (
            ["--container-mounts=/tmp:", "--container-image=x", "true"],
            "srun: error: pyxis: --container-mounts: invalid format: /tmp:\n"
            "srun: error: Invalid --container-mounts argument: /tmp:",
        ),
        (
            ["--container-mounts=:", "--container-image=x", "true"],
            "pyxis: --container-mounts: invalid format: :",
        ),
        (
            ["--container-mounts=", "--container-image=x", "true"],
            "pyxis: --container-mounts: argument required",
        ),
        (
            ["--container-mounts=relative:/x", "--container-image=x", "true"],
            'srun: error: pyxis: mount source must be a relative path, an absolute path, "tmpfs" '
            'or "umount"\nsrun: error: pyxis: could not add mount entry: relative:/x',
        ),
        (
            ["--container-mounts=/a:target", "--container-image=x", "true"],
            "pyxis: mount target must be a relative path or an absolute path",
        ),
        (
            ["--container-name=n:sometimes", "--container-image=x", "true"],
            'pyxis: --container-name: flag must be "auto", "create", "exec" or "no_exec"',
        ),
        (
            ["--container-name=:auto", "--container-image=x", "true"],
            "pyxis: --container-name: empty name",
        ),
        (
            ["--container-save=/tmp/dir/", "--container-image=x", "true"],
            "pyxis: --container-save: target is a directory",
        ),
        (
            ["--container-writable", "--container-readonly", "--container-image=x", "true"],
            "pyxis: both --container-writable and --container-readonly were specified",
        ),
        (
            ["--container-env=A,,B", "--container-image=x", "true"],
            "pyxis: --container-env: invalid format: A,,B",
        ),
    ],
)
def test_srun_rejects_bad_pyxis_options(double_env, dummy_slurm_conf, args, message) -> None:
    env = dict(double_env, SLURM_CONF=dummy_slurm_conf)
    p = run("srun", *args, env=env)
    assert_clean_error(p, 255, message)


def test_srun_without_pyxis_options_is_the_real_srun(double_env, dummy_slurm_conf) -> None:
    env = dict(double_env, SLURM_CONF=dummy_slurm_conf)
    p = run("srun", "--version", env=env)
    assert p.returncode == 0 and text(p.stdout).startswith("slurm")
    p = run("srun", "--bogus-option", env=env)  # the real srun's own error
    assert p.returncode != 0 and "unrecognized option '--bogus-option'" in text(p.stderr)


@pytest.mark.skipif(not os.path.exists("/usr/bin/srun"), reason="needs Slurm's srun")
def test_srun_option_table_matches_the_installed_srun(dummy_slurm_conf) -> None:
    """Every long option of the table has the argument kind the real srun gives it."""
    env = dict(os.environ, SLURM_CONF=dummy_slurm_conf)

    def check(item):
        name, kind = item
        out = []
        for arg in (f"--{name}=zz9", f"--{name}"):
            p = subprocess.run(
                ["/usr/bin/srun", arg], capture_output=True, text=True, env=env, timeout=30
            )
            out.append(p.stderr)
        refuses_value = f"option '--{name}' doesn't allow an argument" in out[0]
        needs_value = f"option '--{name}' requires an argument" in out[1]
        unknown = "unrecognized option" in out[0] or "ambiguous" in out[0]
        got = (
            "unknown"
            if unknown
            else fake_srun.N
            if refuses_value
            else fake_srun.R
            if needs_value
            else fake_srun.OPT
        )
        return name, kind, got

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(check, fake_srun.SRUN_LONG.items()))
    wrong = [r for r in results if r[1] != r[2]]
    assert not wrong, wrong


# ----------------------------------------------------------------- runtime: Apptainer


def printf_argv(*args: bytes) -> list[bytes]:
    return [b"/bin/bash", b"-c", b'printf "%s\\0" "$@"', b"sh", *args]


@pytest.mark.runtime
@needs_runtime
@pytest.mark.parametrize("prog", ["singularity", "apptainer"])
@pytest.mark.parametrize("fmt", ["sqfs", "sif"])
def test_exec_preserves_argv_byte_for_byte(double_env, image, tmp_path, prog, fmt) -> None:
    argv = [
        str(BIN / prog).encode(),
        b"exec",
        str(image[fmt]).encode(),
        *printf_argv(*HOSTILE_ARGS),
    ]
    p = subprocess.run(argv, env=double_env, cwd=tmp_path, capture_output=True, timeout=120)
    assert p.returncode == 0, text(p.stderr)
    # as the real tools: bytes that are not UTF-8 arrive as U+FFFD, one per byte
    want = [a.decode("utf-8", "replace").encode() for a in HOSTILE_ARGS]
    assert b"\xef\xbf\xbd\xef\xbf\xbd not utf-8" in want
    assert p.stdout == b"".join(a + b"\0" for a in want)


@pytest.mark.runtime
@needs_runtime
@pytest.mark.parametrize("fmt", ["sqfs", "sif"])
def test_exec_binds_env_cwd_and_exit_status(double_env, image, tmp_path, fmt) -> None:
    data = tmp_path / "data dir"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    work = tmp_path / "work"
    work.mkdir()
    script = (
        'cat /data/in.txt; echo "cwd=$(pwd)"; echo "FOO=$FOO"; echo "IMAGE_VAR=$IMAGE_VAR";'
        ' echo "HOSTVAR=$HOSTVAR"; echo written > /data/out.txt; exit 42'
    )
    env = dict(double_env, HOSTVAR="host value")
    p = run(
        "singularity",
        "exec",
        "-B",
        f"{data}:/data",
        "--env",
        "FOO=bar baz",
        str(image[fmt]),
        "/bin/bash",
        "-c",
        script,
        env=env,
        cwd=work,
    )
    assert p.returncode == 42, text(p.stderr)
    out = text(p.stdout).splitlines()
    assert out == [
        "from the host",
        f"cwd={work}",
        "FOO=bar baz",
        "IMAGE_VAR=from-image",
        "HOSTVAR=host value",
    ]
    assert (data / "out.txt").read_text() == "written\n"


@pytest.mark.runtime
@needs_runtime
def test_exec_env_precedence_and_cleanenv(double_env, image, tmp_path) -> None:
    env = dict(double_env, HOSTVAR="h", SINGULARITYENV_FROMPREFIX="p", IMAGE_VAR="host")
    script = 'echo "$IMAGE_VAR|$HOSTVAR|$FROMPREFIX|$PATH|$HOME"'
    p = run(
        "singularity",
        "exec",
        "--env",
        "IMAGE_VAR=user",
        str(image["sif"]),
        "/bin/bash",
        "-c",
        script,
        env=env,
        cwd=tmp_path,
    )
    assert (
        text(p.stdout).strip() == f"user|h|p|/usr/local/bin:/usr/bin:/bin|{double_env['HOME']}"
    ), text(p.stderr)
    p = run(
        "singularity",
        "exec",
        "--cleanenv",
        str(image["sif"]),
        "/bin/bash",
        "-c",
        script,
        env=env,
        cwd=tmp_path,
    )
    assert (
        text(p.stdout).strip() == f"from-image||p|/usr/local/bin:/usr/bin:/bin|{double_env['HOME']}"
    ), text(p.stderr)
    envfile = tmp_path / "env.txt"
    envfile.write_text("# comment\nexport FROMFILE='file value'\nIMAGE_VAR=file\n")
    p = run(
        "apptainer",
        "exec",
        "--env-file",
        str(envfile),
        str(image["sqfs"]),
        "/bin/bash",
        "-c",
        'echo "$FROMFILE|$IMAGE_VAR"',
        env=env,
        cwd=tmp_path,
    )
    assert text(p.stdout).strip() == "file value|file", text(p.stderr)


@pytest.mark.runtime
@needs_runtime
@pytest.mark.parametrize(
    "prog,var",
    [
        ("singularity", "SINGULARITY_BIND"),
        ("apptainer", "APPTAINER_BIND"),
        ("apptainer", "SINGULARITY_BIND"),
    ],
)
def test_exec_binds_from_environment(double_env, image, tmp_path, prog, var) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("A")
    (b / "f").write_text("B")
    env = dict(double_env, **{var: f"{a}:/mnt,{b}:/opt/bdir:ro"})
    p = run(
        prog,
        "exec",
        str(image["sif"]),
        "/bin/bash",
        "-c",
        "cat /mnt/f /opt/bdir/f",
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 0, text(p.stderr)
    assert text(p.stdout) == "AB"


@pytest.mark.runtime
@needs_runtime
def test_exec_creates_missing_mount_points_like_the_real_runtime(
    double_env, image, tmp_path
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_text("dir bind\n")
    f = tmp_path / "single file"
    f.write_text("file bind\n")
    p = run(
        "apptainer",
        "exec",
        "-B",
        f"{d}:/new/deep/dir",
        "-B",
        f"{f}:/etc/newfile.conf",
        str(image["sqfs"]),
        "/bin/bash",
        "-c",
        "cat /new/deep/dir/x /etc/newfile.conf",
        env=double_env,
        cwd=tmp_path,
    )
    assert p.returncode == 0, text(p.stderr)
    assert text(p.stdout) == "dir bind\nfile bind\n"


@pytest.mark.runtime
@needs_runtime
def test_exec_image_src_bind_of_a_squashfs_venv(double_env, image, tmp_path) -> None:
    """The LUMI pattern: -B env.sqsh:/user-software:image-src=/"""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export IN_VENV=yes\n")
    subprocess.run(
        [
            "mksquashfs",
            str(venv),
            str(tmp_path / "env.sqsh"),
            "-noappend",
            "-quiet",
            "-no-progress",
        ],
        check=True,
    )
    p = run(
        "singularity",
        "exec",
        "-B",
        "env.sqsh:/user-software:image-src=/",
        str(image["sif"]),
        "/bin/bash",
        "-c",
        ". /user-software/bin/activate && echo $IN_VENV && ls /user-software",
        env=double_env,
        cwd=tmp_path,
    )
    assert p.returncode == 0, text(p.stderr)
    assert text(p.stdout).split() == ["yes", "bin"]
    p = run(
        "singularity",
        "exec",
        "-B",
        "env.sqsh:/user-software:image-src=/nope",
        str(image["sif"]),
        "true",
        env=double_env,
        cwd=tmp_path,
    )
    assert_clean_error(p, 255, "image-src /nope doesn't exist")


@pytest.mark.runtime
@needs_runtime
def test_exec_pwd_contain_and_sandbox(double_env, image, tmp_path) -> None:
    p = run(
        "singularity",
        "exec",
        "--pwd",
        "/opt",
        str(image["sif"]),
        "/bin/bash",
        "-c",
        "pwd",
        env=double_env,
        cwd=tmp_path,
    )
    assert text(p.stdout).strip() == "/opt", text(p.stderr)
    marker = tmp_path / "marker"
    marker.write_text("x")
    p = run(
        "singularity",
        "exec",
        "-C",
        str(image["sif"]),
        "/bin/bash",
        "-c",
        f"pwd; test -e {marker} && echo visible || echo hidden",
        env=double_env,
        cwd=tmp_path,
    )
    assert text(p.stdout).split() == [double_env["HOME"], "hidden"], text(p.stderr)
    p = run(
        "apptainer",
        "exec",
        str(image["rootfs"]),
        "/bin/bash",
        "-c",
        f"cat {marker}; echo; pwd",
        env=double_env,
        cwd=tmp_path,
    )
    assert text(p.stdout).split() == ["x", str(tmp_path)], text(p.stderr)


@pytest.mark.runtime
@needs_runtime
def test_run_needs_a_runscript(double_env, image, tmp_path) -> None:
    p = run("singularity", "run", str(image["sif"]), env=double_env, cwd=tmp_path)
    assert_clean_error(p, 255, "no /.singularity.d/runscript in")


@pytest.mark.runtime
@needs_runtime
def test_exec_exit_status_of_a_missing_command(double_env, image, tmp_path) -> None:
    p = run(
        "singularity", "exec", str(image["sif"]), "/no/such/command", env=double_env, cwd=tmp_path
    )
    assert p.returncode != 0 and "Traceback" not in text(p.stderr)
    # a name not on the container's PATH: as the real tools (both 255 with this FATAL line)
    for prog in ("singularity", "apptainer"):
        p = run(prog, "exec", str(image["sif"]), "nosuchcmd", env=double_env, cwd=tmp_path)
        assert_clean_error(p, 255, 'FATAL:   "nosuchcmd": executable file not found in $PATH')


# -------------------------------------------------------------------- runtime: enroot


@pytest.mark.runtime
@needs_runtime
def test_enroot_create_start_list_remove(double_env, image, tmp_path) -> None:
    data = tmp_path / "data"
    env = dict(double_env, ENROOT_DATA_PATH=str(data), HOSTONLY="h")
    assert run("enroot", "create", "--name", "c1", str(image["sqfs"]), env=env).returncode == 0
    assert (data / "c1" / "bin").exists()
    assert_clean_error(
        run("enroot", "create", "-n", "c1", str(image["sqfs"]), env=env),
        1,
        f"[ERROR] File already exists: {data / 'c1'}",
    )
    assert run("enroot", "create", "-f", "-n", "c1", str(image["sqfs"]), env=env).returncode == 0
    assert text(run("enroot", "list", env=env).stdout).split() == ["c1"]
    mnt = tmp_path / "m"
    mnt.mkdir()
    (mnt / "f").write_text("mounted")
    script = 'cat /mnt/f; echo "|$A|$B|$IMAGE_ENV|$HOSTONLY|$(pwd)|$*"; exit 3'
    for target in ("c1", str(image["sqfs"])):
        p = run(
            "enroot",
            "start",
            "--mount",
            f"{mnt}:/mnt",
            "-e",
            "A=1",
            "--env",
            "B",
            target,
            "/bin/bash",
            "-c",
            script,
            "x",
            "a b",
            env=dict(env, B="from host"),
            cwd=tmp_path,
        )
        assert p.returncode == 3, text(p.stderr)
        # /etc/rc of the image cds to /opt/wd; the host environment is not passed
        assert text(p.stdout) == "mounted|1|from host|from-image-environment||/opt/wd|a b\n"
    conf = tmp_path / "c.conf"
    conf.write_text(
        'environ() {\n    echo "CONF_VAR=from conf"\n}\n'
        f'mounts() {{\n    echo "{mnt} /confmnt none x-create=dir,bind"\n}}\n'
    )
    p = run(
        "enroot",
        "start",
        "--conf",
        str(conf),
        "c1",
        "/bin/bash",
        "-c",
        'echo "$CONF_VAR"; cat /confmnt/f',
        env=env,
        cwd=tmp_path,
    )
    assert text(p.stdout) == "from conf\nmounted", text(p.stderr)
    p = run("enroot", "start", "--rw", "c1", "/bin/bash", "-c", "echo hi > /written", env=env)
    assert p.returncode == 0 and (data / "c1" / "written").read_text() == "hi\n"
    run("enroot", "remove", "c1", env=env, input=b"n\n")
    assert (data / "c1").exists()
    assert run("enroot", "remove", "-f", "c1", env=env).returncode == 0
    assert not (data / "c1").exists()
    assert text(run("enroot", "list", env=env).stdout) == ""


# ------------------------------------------------------------------ runtime: registry


@pytest.mark.runtime
@needs_runtime
@pytest.mark.skipif(
    not (
        os.environ.get("SLURMC_TEST_REGISTRY")
        and os.environ.get("SLURMC_REGISTRY_CA")
        and (REPO / "scripts" / "push-test-image").exists()
    ),
    reason='no test registry (eval "$(scripts/registry up)")',
)
def test_pull_and_import_from_the_test_registry(double_env, image, tmp_path) -> None:
    ref = f"{os.environ['SLURMC_TEST_REGISTRY']}/slurmc/doubles:1"
    push = subprocess.run(
        [
            str(REPO / "scripts" / "push-test-image"),
            str(image["rootfs"]),
            ref,
            "--env",
            "FROM_OCI=yes",
            "--workdir",
            "/opt/wd",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert push.returncode == 0, push.stderr
    env = dict(double_env, REQUESTS_CA_BUNDLE=os.environ["SLURMC_REGISTRY_CA"])
    p = run(
        "singularity",
        "pull",
        "--force",
        "img.sif",
        f"docker://{ref}",
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 0, text(p.stderr)
    assert sif.primary_partition(str(tmp_path / "img.sif"))
    p = run(
        "singularity", "exec", "img.sif", "/bin/bash", "-c", "echo $FROM_OCI", env=env, cwd=tmp_path
    )
    assert text(p.stdout).strip() == "yes", text(p.stderr)
    p = run(
        "singularity",
        "run",
        "img.sif",
        "/bin/bash",
        "-c",
        'echo "run:$1"',
        "x",
        "a b",
        env=env,
        cwd=tmp_path,
    )
    assert text(p.stdout).strip() == "run:a b", text(p.stderr)
    p = run("apptainer", "pull", f"docker://{ref}", env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0 and (tmp_path / "doubles_1.sif").exists(), text(p.stderr)
    # pushed with an OCI manifest: enroot's manifest HEAD (no Accept header) gets 404 from
    # docker-registry 2.8, as real enroot 4.1.2 does; curl's CA variables, not requests'
    p = run("enroot", "import", f"docker://{ref}", env=env, cwd=tmp_path, timeout=300)
    assert_clean_error(p, 1, "SSL certificate problem")
    env["CURL_CA_BUNDLE"] = os.environ["SLURMC_REGISTRY_CA"]
    p = run("enroot", "import", f"docker://{ref}", env=env, cwd=tmp_path, timeout=300)
    assert_clean_error(p, 1, "/v2/slurmc/doubles/manifests/1 returned error code: 404 Not Found")
    v2s2 = subprocess.run(
        [
            str(REPO / "scripts" / "push-test-image"),
            str(image["rootfs"]),
            ref,
            "--env",
            "FROM_OCI=yes",
            "--workdir",
            "/opt/wd",
            "--format",
            "v2s2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert v2s2.returncode == 0, v2s2.stderr
    p = run("enroot", "import", f"docker://{ref}", env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, text(p.stderr)
    sqsh = tmp_path / "slurmc+doubles+1.sqsh"
    p = run(
        "enroot",
        "start",
        str(sqsh),
        "/bin/bash",
        "-c",
        "echo $FROM_OCI $(pwd)",
        env=env,
        cwd=tmp_path,
    )
    assert text(p.stdout).strip() == "yes /opt/wd", text(p.stderr)


@pytest.mark.runtime
@needs_runtime
@pytest.mark.skipif(
    not (REPO / "scripts" / "build-test-image").exists(),
    reason="scripts/build-test-image not there",
)
def test_the_shared_test_image_runs(double_env, tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp("shared-image")
    b = subprocess.run(
        [str(REPO / "scripts" / "build-test-image"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if b.returncode != 0:
        pytest.skip(f"build-test-image failed: {b.stderr[-500:]}")
    built = [f for f in ("image.sif", "image.sqfs") if (out / f).exists()]
    assert built, f"build-test-image made neither image.sif nor image.sqfs: {b.stderr[-500:]}"
    for f in built:
        p = run(
            "singularity",
            "exec",
            str(out / f),
            "python3",
            "-c",
            "import sys; print(sys.argv[1:])",
            "a b",
            "$X",
            env=double_env,
            cwd=out,
        )
        assert p.returncode == 0, text(p.stderr)
        assert text(p.stdout).strip() == "['a b', '$X']"


# ------------------------------------------------------------------ cluster: Pyxis


@pytest.mark.cluster
@needs_cluster
@needs_runtime
def test_srun_container_image_runs_the_step_in_the_image(double_env, image, tmp_path) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in").write_text("from host\n")
    env = dict(double_env, SLURM_CONF=os.environ["SLURM_CONF"], HOSTVAR="h", IMAGE_ENV="host value")
    args = [
        b"--container-image=" + str(image["sqfs"]).encode(),
        b"--container-mounts="
        + str(host).encode()
        + b":/data,"
        + str(host).encode()
        + b":./rel/ro:ro",
        *printf_argv(*HOSTILE_ARGS),
    ]
    p = subprocess.run(
        [str(BIN / "srun").encode(), b"-n1", b"-t", b"5", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
    )
    assert p.returncode == 0, text(p.stderr)
    assert p.stdout == b"".join(a + b"\0" for a in HOSTILE_ARGS)
    script = 'cat /data/in /rel/ro/in; echo "$(pwd)|$HOSTVAR|$IMAGE_ENV|$SLURM_JOB_ID"; exit 7'
    p = run(
        "srun",
        "-n1",
        "--container-image",
        str(image["sqfs"]),
        "--container-mounts",
        f"{host}:/data,{host}:/rel/ro",
        "--container-workdir=/opt",
        "/bin/bash",
        "-c",
        script,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 7, text(p.stderr)
    lines = text(p.stdout).splitlines()
    assert lines[:2] == ["from host", "from host"]
    cwd, hostvar, image_env, job = lines[2].split("|")
    assert (cwd, hostvar, image_env) == ("/opt", "h", "from-image-environment") and job
    p = run(
        "srun",
        "-n1",
        f"--container-image={image['sqfs']}",
        "--container-env=IMAGE_ENV",
        "/bin/bash",
        "-c",
        'echo "$(pwd)|$IMAGE_ENV"',
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert text(p.stdout).strip() == "/opt/wd|host value", text(p.stderr)


@pytest.mark.cluster
@needs_cluster
@needs_runtime
def test_srun_named_container_writable_and_save(double_env, image, tmp_path) -> None:
    env = dict(
        double_env,
        SLURM_CONF=os.environ["SLURM_CONF"],
        ENROOT_DATA_PATH=str(tmp_path / "enroot-data"),
    )
    name = f"doubles{os.getpid()}"
    p = run(
        "srun",
        "-n1",
        f"--container-image={image['sqfs']}",
        f"--container-name={name}",
        "--container-writable",
        "/bin/bash",
        "-c",
        "echo kept > /kept",
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 0, text(p.stderr)
    p = run(
        "srun",
        "-n1",
        f"--container-name={name}",
        "/bin/bash",
        "-c",
        "cat /kept",
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert text(p.stdout) == "kept\n", text(p.stderr)
    p = run("srun", "-n1", "--container-name=nosuch", "true", env=env, cwd=tmp_path, timeout=300)
    assert p.returncode != 0 and "does not exist" in text(p.stderr)
    p = run(
        "srun",
        "-n1",
        f"--container-image={image['sqfs']}",
        "--container-save=saved.sqsh",
        "/bin/bash",
        "-c",
        "echo saved > /saved",
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 0, text(p.stderr)
    listing = subprocess.run(
        ["unsquashfs", "-l", str(tmp_path / "saved.sqsh")], capture_output=True, text=True
    )
    assert "squashfs-root/saved" in listing.stdout


@pytest.mark.cluster
@needs_cluster
def test_srun_passes_through_without_pyxis_options(double_env, tmp_path) -> None:
    env = dict(double_env, SLURM_CONF=os.environ["SLURM_CONF"])
    p = run(
        "srun",
        "-n1",
        "/bin/sh",
        "-c",
        'echo "on host $SLURM_JOB_ID"',
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 0 and text(p.stdout).startswith("on host "), text(p.stderr)


# ------------------------------------------- what the real tools do (checked against them)
# Oracles: real Apptainer 1.1.9/1.4.5 and SingularityCE 3.11.5 runs and their sources
# (tests/doubles/README.md, "Versions imitated").


@pytest.mark.parametrize("prog", ["singularity", "apptainer"])
def test_pull_bare_name_per_flavour(double_env, tmp_path, prog):
    p = run(prog, "pull", "x.sif", env=double_env, cwd=tmp_path)
    # SingularityCE reads a bare name as library://; Apptainer wants a transport
    want = "Unsupported transport type: library" if prog == "singularity" else "No transport type"
    assert_clean_error(p, 255, want)


def test_pull_flags_after_the_arguments_are_arguments(double_env, tmp_path):
    p = run("apptainer", "pull", "out.sif", "docker://127.0.0.1:1/x:1", "--force", env=double_env)
    assert_clean_error(p, 1, "accepts between 1 and 2 arg(s), received 3")


def test_boot_is_not_a_flag(double_env, tmp_path):
    p = run("singularity", "exec", "--boot", "img", "true", env=double_env, cwd=tmp_path)
    assert_clean_error(p, 1, "unknown flag: --boot")


@pytest.mark.parametrize(
    ("value", "fields", "error"),
    [
        ("a,b", ["a", "b"], None),
        ('"a,b",c', ["a,b", "c"], None),
        ('"dq""x:/mnt"', ['dq"x:/mnt'], None),
        ('dq"x:/mnt', None, 'column 3: bare " in non-quoted-field'),
        ('"open', None, 'extraneous or missing " in quoted-field'),
        ("", [""], None),
    ],
)
def test_go_csv_record(value, fields, error):
    if error:
        with pytest.raises(ValueError, match=re.escape(error)):
            fake_apptainer.go_csv_record(value)
    else:
        assert fake_apptainer.go_csv_record(value) == fields


@pytest.mark.runtime
@needs_runtime
def test_singularityce_reads_bind_as_csv_apptainer_does_not(double_env, image, tmp_path):
    data = tmp_path / 'dq"x'
    data.mkdir()
    (data / "f").write_text("in\n")
    spec = f"{data}:/mnt"
    p = run("singularity", "exec", "-B", spec, str(image["sif"]), "cat", "/mnt/f", env=double_env)
    assert_clean_error(p, 1, 'bare " in non-quoted-field')
    quoted = '"' + spec.replace('"', '""') + '"'
    p = run("singularity", "exec", "-B", quoted, str(image["sif"]), "cat", "/mnt/f", env=double_env)
    assert p.returncode == 0 and text(p.stdout) == "in\n", text(p.stderr)
    p = run("apptainer", "exec", "-B", spec, str(image["sif"]), "cat", "/mnt/f", env=double_env)
    assert p.returncode == 0 and text(p.stdout) == "in\n", text(p.stderr)


@pytest.mark.runtime
@needs_runtime
def test_mount_binds_paths_that_b_cannot_carry(double_env, image, tmp_path):
    data = tmp_path / 'a^b,c"d'
    data.mkdir()
    (data / "f").write_text("mounted\n")
    src = '"source=' + str(data).replace('"', '""') + '"'
    p = run(
        "singularity",
        "exec",
        "--mount",
        f"type=bind,{src},destination=/mnt",
        str(image["sif"]),
        "cat",
        "/mnt/f",
        env=double_env,
    )
    assert p.returncode == 0 and text(p.stdout) == "mounted\n", text(p.stderr)


@pytest.mark.runtime
@needs_runtime
def test_env_is_evaluated_after_99_base_and_dropped_without_it(double_env, image, tmp_path):
    show = 'printf "%s|" "$A" "$B" "$C"'
    args = ["--env", "A=$HOME", "--env", "B=`echo bt`", "--env", 'C=a"b']
    p = run("singularity", "exec", *args, str(image["sif"]), "/bin/sh", "-c", show, env=double_env)
    assert text(p.stdout) == f'{double_env["HOME"]}|bt|a"b|', text(p.stderr)
    # --no-eval (SingularityCE) keeps them literal
    p = run(
        "singularity",
        "exec",
        "--no-eval",
        *args,
        str(image["sif"]),
        "/bin/sh",
        "-c",
        show,
        env=double_env,
    )
    assert text(p.stdout) == '$HOME|`echo bt`|a"b|', text(p.stderr)
    # a value ending in a backslash breaks the injection: one line, all dropped, exit 0
    p = run(
        "apptainer",
        "exec",
        "--env",
        "A=x",
        "--env",
        "B=end\\",
        str(image["sif"]),
        "/bin/sh",
        "-c",
        show,
        env=double_env,
    )
    assert p.returncode == 0 and text(p.stdout) == "|||"
    assert "reached EOF without closing quote" in text(p.stderr)
    # an image without 99-base.sh: the variables never arrive
    bare = tmp_path / "bare"
    shutil.copytree(image["rootfs"], bare, symlinks=True)
    (bare / ".singularity.d/env/99-base.sh").unlink()
    p = run("apptainer", "exec", *args, str(bare), "/bin/sh", "-c", show, env=double_env, cwd="/")
    assert p.returncode == 0 and text(p.stdout) == "|||", text(p.stderr)


@pytest.mark.runtime
@needs_runtime
def test_host_runtime_variables_and_home(double_env, image, tmp_path):
    env = dict(double_env, SINGULARITY_FOO="s", APPTAINER_BAR="a", PLAIN="p")
    show = 'printf "%s|" "${SINGULARITY_FOO-unset}" "${APPTAINER_BAR-unset}" "$PLAIN" "$HOME"'
    p = run(
        "apptainer",
        "exec",
        "--env",
        "HOME=/elsewhere",
        str(image["sif"]),
        "/bin/sh",
        "-c",
        show,
        env=env,
    )
    assert text(p.stdout) == f"unset|unset|p|{double_env['HOME']}|", text(p.stderr)
    assert "Overriding HOME environment variable with APPTAINERENV_HOME is not permitted" in text(
        p.stderr
    )


@pytest.mark.runtime
@needs_runtime
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_a_signal_ends_the_runtime_with_it(double_env, image, tmp_path, sig):
    """Real Apptainer/SingularityCE: the starter dies by the same signal (143, 137, 130)."""
    p = run(
        "singularity",
        "exec",
        str(image["sif"]),
        "/bin/sh",
        "-c",
        f"kill -{int(sig)} $$",
        env=double_env,
        cwd=tmp_path,
    )
    assert p.returncode == -int(sig), text(p.stderr)


@pytest.mark.runtime
@needs_runtime
def test_image_src_needs_a_data_partition_or_image(double_env, image, tmp_path):
    """A SIF without id= mounts its first data partition (the system one is not one);
    a directory is not a data image."""
    for src, message in ((image["sif"], "no data partition found"), (image["rootfs"], "directory")):
        p = run(
            "singularity",
            "exec",
            "-B",
            f"{src}:/mnt:image-src=/",
            str(image["sif"]),
            "true",
            env=double_env,
            cwd=tmp_path,
        )
        assert_clean_error(p, 255, message)


@pytest.mark.runtime
@needs_runtime
def test_rocm_warning_says_nv_on_singularityce(double_env, image, tmp_path):
    for prog in ("singularity", "apptainer"):
        p = run(prog, "exec", "--rocm", str(image["sif"]), "true", env=double_env, cwd=tmp_path)
        assert p.returncode == 0
        warned = "WARNING: Could not find any nv files on this host!" in text(p.stderr)
        assert warned is (prog == "singularity"), text(p.stderr)  # Apptainer 1.4.5: silent


@pytest.mark.runtime
@needs_runtime
def test_working_directory_rules(double_env, image, tmp_path):
    """/opt is never bound as the working directory; a failed chdir falls back to $HOME."""
    p = run(
        "apptainer",
        "exec",
        str(image["sif"]),
        "/bin/sh",
        "-c",
        "pwd; ls",
        env=double_env,
        cwd="/opt",
    )
    lines = text(p.stdout).splitlines()
    # the image's /opt (holding wd/), not the host's: cwd /opt was not bound
    assert p.returncode == 0 and lines[0] == "/opt" and "wd" in lines[1:], text(p.stderr)
    assert not os.path.exists("/opt/wd")
    p = run(
        "singularity",
        "exec",
        "--pwd",
        "/no/such/dir",
        str(image["sif"]),
        "/bin/sh",
        "-c",
        "pwd",
        env=double_env,
        cwd=tmp_path,
    )
    assert p.returncode == 0 and text(p.stdout) == double_env["HOME"] + "\n", text(p.stderr)


@pytest.mark.parametrize(
    ("prog", "prefix"),
    [("singularity", "FATAL:   While checking image: "), ("apptainer", "FATAL:   ")],
)
def test_missing_image_message_per_flavour(double_env, tmp_path, prog, prefix):
    p = run(prog, "exec", "/no/such/image.sif", "true", env=double_env, cwd=tmp_path)
    assert_clean_error(p, 255, prefix + "could not open image /no/such/image.sif")


# ---------------------------------------- as real Enroot 4.1.2 / Pyxis 0.24.0 (issue 13)


@pytest.mark.runtime
@needs_runtime
def test_enroot_start_mount_forms_and_read_only(double_env, image, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("hi\n")
    sq = str(image["sqfs"])
    p = run("enroot", "start", "-m", str(src), sq, "cat", f"{src}/f", env=double_env)
    assert (p.returncode, p.stdout) == (0, b"hi\n"), text(p.stderr)  # -m SRC: same path
    p = run(
        "enroot",
        "start",
        "-m",
        f"{src}:/missing/deep",
        sq,
        "cat",
        "/missing/deep/f",
        env=double_env,
    )
    assert (p.returncode, p.stdout) == (0, b"hi\n"), text(p.stderr)  # x-create=auto
    p = run(
        "enroot",
        "start",
        "-m",
        f"{src}:/mnt:none:rbind,ro",
        sq,
        "/bin/sh",
        "-c",
        "echo x > /mnt/g",
        env=double_env,
    )
    assert p.returncode != 0 and "Read-only file system" in text(p.stderr)
    assert not (src / "g").exists()
    p = run(
        "enroot",
        "start",
        "-m",
        f"{src}:/mnt:none:rbind",
        sq,
        "/bin/sh",
        "-c",
        "echo x > /mnt/g",
        env=double_env,
    )
    assert p.returncode == 0 and (src / "g").read_text() == "x\n", text(p.stderr)


@pytest.mark.runtime
@needs_runtime
@pytest.mark.parametrize(("sig", "signum"), [("TERM", 15), ("KILL", 9)])
def test_enroot_start_ends_with_the_commands_signal(double_env, image, sig, signum) -> None:
    # ch-run on a SquashFS file would report exit 1; the caller must see the signal
    # (a shell then says 128+N: 143, 137)
    p = run(
        "enroot", "start", str(image["sqfs"]), "/bin/sh", "-c", f"kill -{sig} $$", env=double_env
    )
    assert p.returncode == -signum, text(p.stderr)


@pytest.mark.cluster
@needs_cluster
@needs_runtime
def test_srun_pyxis_exit_statuses_path_and_mounts_as_real(double_env, image, tmp_path) -> None:
    env = dict(double_env, SLURM_CONF=os.environ["SLURM_CONF"], PATH=f"{BIN}:/usr/bin:/bin:/x")
    img = f"--container-image={image['sqfs']}"

    def srun(*args: str):
        return run("srun", "-n1", "-t", "5", img, *args, env=env, cwd=tmp_path, timeout=300)

    p = srun("nosuchcmd")  # slurmstepd's execve fails
    assert p.returncode == 2, text(p.stderr)
    assert re.search(r"slurmstepd-\S+: error: execve\(\): nosuchcmd: No such file", text(p.stderr))
    for sig, status, word in (("TERM", 143, "Terminated"), ("KILL", 137, "Killed")):
        p = srun("/bin/sh", "-c", f"kill -{sig} $$")
        assert p.returncode == status and f"task 0: {word}" in text(p.stderr), text(p.stderr)
    p = srun("/bin/sh", "-c", 'echo "$PATH"')  # the host PATH never reaches the container
    assert p.returncode == 0 and b"/x" not in p.stdout and p.stdout.strip(), text(p.stderr)
    p = srun("--container-env=PATH", "/bin/sh", "-c", 'echo "$PATH"')
    assert p.stdout.strip().endswith(b":/x"), text(p.stderr)
    missing = tmp_path / "absent"
    p = srun(f"--container-mounts={missing}:/data", "true")
    assert p.returncode != 0
    assert f"pyxis: --container-mounts: source path does not exist: {missing}" in text(p.stderr)
    ro = tmp_path / "ro"
    ro.mkdir()
    p = srun(f"--container-mounts={ro}:/data:ro", "/bin/sh", "-c", "echo x > /data/f")
    assert p.returncode != 0 and "Read-only file system" in text(p.stderr)
    assert not (ro / "f").exists()
    p = srun("--container-unshare=net,uts", "/bin/sh", "-c", "cat /proc/net/dev")
    assert p.returncode == 0 and b"eth" not in p.stdout and b"lo:" in p.stdout, text(p.stderr)
    p = srun("--container-unshare=pid", "true")
    assert_clean_error(p, 255, "pyxis: --container-unshare: unknown namespace 'pid'")


@pytest.mark.cluster
@needs_cluster
@needs_runtime
def test_srun_pyxis_passes_docker_uris_through(double_env, tmp_path) -> None:
    log = tmp_path / "calls.jsonl"
    env = dict(double_env, SLURM_CONF=os.environ["SLURM_CONF"], SLURMC_DOUBLE_LOG=str(log))
    run(
        "srun",
        "-n1",
        "-t",
        "2",
        "--container-image=docker://127.0.0.1:9#x/y:1",
        "true",
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    imports = [c["argv"] for c in calls if c["tool"] == "enroot" and c["argv"][0] == "import"]
    assert imports and imports[0][-1] == "docker://127.0.0.1:9#x/y:1"  # not docker://docker://
