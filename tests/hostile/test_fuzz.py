"""Property-based fuzzing of every parser of outside input, on a fixed budget.

Each parser either returns a value its callers can use, or raises the project's
one-line error (a SlurmcError subclass); never another exception, never slower
than the deadline. The budget is fixed (examples per property, a deterministic
seed) so the tier adds well under two minutes to CI; SLURMC_FUZZ_EXAMPLES=N with
SLURMC_FUZZ_RANDOM=1 runs a longer, randomised campaign locally.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slurmc.errors import SlurmcError, ValidationError

pytestmark = pytest.mark.hostile

SCALE = int(os.environ.get("SLURMC_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    deadline=2000,  # ms per example: a slow path is a finding too
    derandomize=not os.environ.get("SLURMC_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=list(HealthCheck),
)


def budget(n: int) -> settings:
    return settings(FUZZ, max_examples=SCALE or n)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
DEEP = st.integers(min_value=1, max_value=200_000).map(lambda n: "[" * n + "]" * (n % 3))


# ---- references -----------------------------------------------------------------------------

REF_ALPHABET = "abcxyz019._-/:@+[]ABC \t\n\x00\u00e9\u0661"


@budget(400)
@given(st.text(alphabet=REF_ALPHABET, max_size=300) | st.text(max_size=50))
def test_references(text):
    from slurmc.errors import InvalidReferenceError
    from slurmc.grammar.refs import parse_reference
    from slurmc.runtimes import get_runtime

    try:
        ref = parse_reference(text)
    except InvalidReferenceError:
        return
    for name in ("apptainer", "charliecloud", "enroot", "podman"):
        try:
            rel = get_runtime(name).cache_relpath(ref)
        except InvalidReferenceError:
            continue
        parts = rel.split("/")
        assert not rel.startswith("/") and ".." not in parts and "" not in parts
        assert "\0" not in rel


# ---- site files -----------------------------------------------------------------------------

TOML_TOKENS = [
    'name = "s"\n',
    "[runtime]\n",
    'kind = "charliecloud"\n',
    "[images]\n",
    "cache = [",
    '"/tmp/x"',
    '"~/c"',
    '"~nobody-x/c"',
    '"$HOME/c"',
    '"${UNSET_X:-/d}"',
    '"\\u0000"',
    "]\n",
    "[slurm]\n",
    "[slurm.defaults]\n",
    'time = "١٢"\n',
    'mem = "8G"\n',
    "[detect]\n",
    'cluster_name = "c"\n',
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    '"',
    "'",
    "\n",
    "1",
    "true",
    "\xff",
    "a.b.c = 1\n",
    "[[partitions]]\n",
    'name = "p"\n',
    "x = [[[[[[\n",
    "\ufeff",
    "\0",
]


@budget(300)
@given(
    st.lists(st.sampled_from(TOML_TOKENS), max_size=40).map("".join)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    | DEEP.map(lambda d: "a = " + d)
)
def test_site_files(text):
    from slurmc.core.roots import site_roots
    from slurmc.core.sites import load_site_file

    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "s.toml")
        path.write_bytes(text.encode("utf-8", "surrogateescape").replace(b"\\xff", b"\xff"))
        try:
            site = load_site_file(path)
            site_roots(site, {"HOME": d}, (), ())
        except SlurmcError:
            pass


# ---- SIF and SquashFS headers, cache checks ---------------------------------------------------


def _doubles_sif():
    spec = importlib.util.spec_from_file_location(
        "sif_double", Path(__file__).parents[1] / "doubles" / "sif.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("samples")
    (d / "root").mkdir()
    (d / "root" / "hello.txt").write_text("hi\n")
    subprocess.run(
        ["mksquashfs", str(d / "root"), str(d / "a.sqfs"), "-noappend", "-quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _doubles_sif().pack(str(d / "a.sqfs"), str(d / "a.sif"))
    return {"sqfs": (d / "a.sqfs").read_bytes(), "sif": (d / "a.sif").read_bytes()}


MUTATIONS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=4200), st.integers(0, 255)), max_size=12
)


def _mutate(data: bytes, edits, cut: int | None) -> bytes:
    b = bytearray(data)
    for off, val in edits:
        if off < len(b):
            b[off] = val
    return bytes(b[:cut] if cut is not None else b)


@budget(250)
@given(
    kind=st.sampled_from(["sif", "sqfs"]),
    edits=MUTATIONS,
    cut=st.none() | st.integers(min_value=0, max_value=40_000),
)
def test_sif_and_squashfs_headers(samples, kind, edits, cut):
    from slurmc.cache.formats import check_image, detect_format
    from slurmc.images.sif import read_labels, read_sif
    from slurmc.images.squashfs import read_superblock

    data = _mutate(samples[kind], edits, cut)
    with tempfile.NamedTemporaryFile(suffix="." + kind) as f:
        f.write(data)
        f.flush()
        for call in (
            lambda: read_superblock(f.name),
            lambda: read_labels(f.name, read_sif(f.name)),
            lambda: detect_format(f.name),
            lambda: check_image(f.name, "sif"),
            lambda: check_image(f.name, "squashfs"),
            lambda: check_image(f.name, "oci-archive"),
        ):
            with contextlib.suppress(SlurmcError):
                call()


# ---- OCI layouts and docker archives ----------------------------------------------------------

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NAMES = ["a" * 64, "b" * 64, "c" * 64]
DIGEST = st.sampled_from([f"sha256:{n}" for n in NAMES]) | JSON
DESC = st.fixed_dictionaries(
    {"mediaType": st.sampled_from([INDEX, MANIFEST, "x"]) | JSON, "digest": DIGEST},
    optional={"size": JSON | st.integers(-5, 10**6), "platform": JSON},
)
DOC = (
    st.fixed_dictionaries({"manifests": st.lists(DESC, max_size=3) | JSON})
    | st.fixed_dictionaries(
        {"config": DESC | JSON, "layers": st.lists(DESC | JSON, max_size=3) | JSON}
    )
    | st.fixed_dictionaries({"config": st.fixed_dictionaries({"Env": JSON, "Labels": JSON})})
    | JSON
)
RAW = DOC.map(lambda v: json.dumps(v).encode()) | DEEP.map(str.encode) | st.binary(max_size=64)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@budget(300)
@given(
    index=RAW,
    blobs=st.lists(RAW, min_size=3, max_size=3),
    as_tar=st.booleans(),
    docker=st.none() | RAW,
)
@example(  # found by a longer randomised run: a mediaType that is a list
    index=b'{"manifests": [{"mediaType": [], "digest": "sha256:' + b"a" * 64 + b'"}]}',
    blobs=[b'{"manifests": []}', b"[]", b'{"manifests": []}'],
    as_tar=False,
    docker=None,
)
def test_oci_layouts_and_archives(index, blobs, as_tar, docker):
    from slurmc.images.oci import open_oci
    from slurmc.usecases.inspect import inspect_image

    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index}
    files.update({f"blobs/sha256/{n}": b for n, b in zip(NAMES, blobs, strict=True)})
    if docker is not None:
        files = {
            "manifest.json": docker,
            **{f"{n}.json": b for n, b in zip(NAMES, blobs, strict=True)},
        }
    with tempfile.TemporaryDirectory() as d:
        if as_tar or docker is not None:
            path = os.path.join(d, "img.tar")
            Path(path).write_bytes(_tar(files))
        else:
            path = os.path.join(d, "layout")
            for name, data in files.items():
                Path(path, name).parent.mkdir(parents=True, exist_ok=True)
                Path(path, name).write_bytes(data)
        try:
            img = open_oci(path)
            img.to_dict()
            assert isinstance(img.env, dict)
            img.close()
            inspect_image(path).to_dict()
        except SlurmcError:
            pass


# ---- job records ----------------------------------------------------------------------------

RECORD_KEYS = [
    "job_id",
    "cluster",
    "site",
    "submitted_at",
    "command",
    "command_line",
    "image",
    "final",
    "output",
    "error",
    "cwd",
    "comment",
    "submit_attempts",
    "schema",
]
RECORD = st.fixed_dictionaries(
    {"job_id": st.sampled_from(["5", "5_1", 5, "x", "\u0661"]) | JSON},
    optional={
        k: JSON
        | st.fixed_dictionaries({"state": JSON, "exit_code": JSON, "size": JSON, "spec": JSON})
        for k in RECORD_KEYS[1:]
    },
)


@budget(150)
@given(RECORD.map(lambda r: json.dumps(r).encode()) | RAW)
def test_job_records(raw):
    from typer.testing import CliRunner

    from slurmc.cli.app import app
    from slurmc.usecases import records

    with tempfile.TemporaryDirectory() as d:
        jobs = Path(d, "slurmc", "jobs")
        jobs.mkdir(parents=True)
        (jobs / "5.c.json").write_bytes(raw)
        rec, why = records.read(jobs / "5.c.json")
        assert (rec is None) != (why is None)
        env = {"XDG_STATE_HOME": d, "SLURM_CONF": "/nonexistent", "PATH": "/nonexistent"}
        for args in (["jobs", "--last", "0"], ["jobs", "--json"], ["jobs", "show", "5"]):
            r = CliRunner().invoke(app, args, env=env)
            assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.output)
        assert (jobs / "5.c.json").read_bytes() == raw or rec is not None


# ---- --sbatch-arg ---------------------------------------------------------------------------


def _names():
    from slurmc.grammar.sbatch_options import OPTIONS

    return [o[0] for o in OPTIONS]


ARG = st.builds(
    lambda pre, name, cut, eq, value: pre + name[: max(1, cut)] + eq + value,
    st.sampled_from(["--", "-", "", "--no-"]),
    st.sampled_from(_names()) | st.text(max_size=8),
    st.integers(1, 30),
    st.sampled_from(["", "=", " ", "=--comment="]),
    st.text(max_size=10),
)


@budget(500)
@given(st.lists(ARG | st.text(max_size=20), max_size=4))
def test_sbatch_args_keep_the_tag(args):
    from slurmc.core.resources import Resources
    from slurmc.grammar.sbatch_options import OPTIONS, parse

    known = {"--" + o[0] for o in OPTIONS}
    try:
        res = Resources(extra=tuple(args))
    except ValidationError:
        return
    for flag, _ in res.extra_options():
        # a full name sbatch knows, or one that cannot abbreviate one it knows
        assert flag in known or not any(k.startswith(flag) for k in known)
    _, rest = res.split_comment()
    # what is left can hold no --comment, in any spelling: the tag survives
    assert all(flag != "--comment" for arg in rest for flag, _ in parse(arg))
    Resources(extra=rest)  # and stays valid
