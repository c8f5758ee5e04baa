"""A corpus of crafted files, generated here, fed to the real console script.

Every case ends in success or in one line on stderr (warnings aside) with a
non-zero exit, within a time bound: never a traceback, never a hang, and nothing
is published, lost or left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.hostile

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DEEP = b"[" * 100_000
TIME_BOUND = 30.0


def slurmc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    exe = shutil.which("slurmc")
    assert exe, "the slurmc console script is not installed"
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            [exe, *args],
            env={**os.environ, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIME_BOUND,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"slurmc {' '.join(args)[:200]} hung for {TIME_BOUND} s") from None
    r.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
    return r


def errors_of(r) -> list[str]:
    return [
        ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("slurmc: warning:")
    ]


def assert_clean(r, *, must_fail: bool = False) -> None:
    """Success, or one line on stderr and a non-zero exit; never a traceback."""
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errs = errors_of(r)
    if r.returncode == 0:
        assert not must_fail, r.stdout[-2000:]
        return
    assert len(errs) == 1, r.stderr[-2000:]
    assert len(errs[0]) < 2000


# ---- OCI layouts and docker archives ------------------------------------------------------


def _blob(root: Path, data: bytes, name: str | None = None) -> str:
    digest = name or hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def _layout(root: Path, index: bytes, blobs: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_bytes(index)
    for name, data in (blobs or {}).items():
        _blob(root, data, name)
    return root


def _good_parts(root: Path, **override: object) -> bytes:
    """A whole small image; *override* replaces fields of the manifest or config."""
    layer = _tar_bytes({"hello.txt": b"hi\n"})
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]}}
    config.update(override.pop("config", {}))  # type: ignore[arg-type]
    config_raw = override.pop("config_raw", None) or json.dumps(config).encode()
    cfg = _blob(root, config_raw)  # type: ignore[arg-type]
    lay = _blob(root, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": lay,
                "size": override.pop("size", len(layer)),
            }
        ],
    }
    manifest.update(override)
    raw = override.get("manifest_raw") or json.dumps(manifest).encode()
    return json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": MANIFEST, "digest": _blob(root, raw)}]}
    ).encode()  # type: ignore[arg-type]


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _oci_self_cycle(d: Path) -> Path:
    name = "a" * 64
    loop = json.dumps({"manifests": [{"mediaType": INDEX, "digest": f"sha256:{name}"}]})
    return _layout(d, loop.encode(), {name: loop.encode()})


def _oci_two_cycle(d: Path) -> Path:
    a, b = "a" * 64, "b" * 64
    to = lambda n: json.dumps({"manifests": [{"mediaType": INDEX, "digest": f"sha256:{n}"}]})  # noqa: E731
    return _layout(d, to(a).encode(), {a: to(b).encode(), b: to(a).encode()})


def _oci_deep_chain(d: Path) -> Path:
    names = [f"{i:064x}" for i in range(50)]
    blobs = {
        n: json.dumps(
            {"manifests": [{"mediaType": INDEX, "digest": f"sha256:{names[i + 1]}"}]}
        ).encode()
        for i, n in enumerate(names[:-1])
    }
    blobs[names[-1]] = b"{}"
    first = json.dumps({"manifests": [{"mediaType": INDEX, "digest": f"sha256:{names[0]}"}]})
    return _layout(d, first.encode(), blobs)


def _oci_with(**override: object) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        d.mkdir(parents=True)
        index = _good_parts(d, **override)
        (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (d / "index.json").write_bytes(index)
        return d

    return make


def _oci_index(raw: bytes) -> Callable[[Path], Path]:
    return lambda d: _layout(d, raw)


def _as_archive(make: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def archive(d: Path) -> Path:
        src = make(d.with_name(d.name + "-src"))
        out = d.with_name(d.name + ".tar")
        with tarfile.open(out, "w") as tar:
            for p in sorted(src.rglob("*")):
                tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
        return out

    return archive


def _docker(manifest: bytes, config: bytes = b"{}") -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        out = d.with_name(d.name + ".tar")
        out.write_bytes(_tar_bytes({"manifest.json": manifest, "config.json": config}))
        return out

    return make


OCI_CASES: dict[str, Callable[[Path], Path]] = {
    "index-points-to-itself": _oci_self_cycle,
    "two-indexes-point-to-each-other": _oci_two_cycle,
    "50-nested-indexes": _oci_deep_chain,
    "index-json-is-a-list": _oci_index(b"[]"),
    "index-json-is-a-string": _oci_index(b'"x"'),
    "index-json-nested-100000": _oci_index(DEEP),
    "index-json-not-utf8": _oci_index(b'{"manifests": "\xff"}'),
    "manifests-is-a-dict": _oci_index(b'{"manifests": {"a": 1}}'),
    "manifest-digest-is-a-number": _oci_index(b'{"manifests": [{"digest": 7}]}'),
    "digest-escapes-the-layout": _oci_index(
        b'{"manifests": [{"digest": "sha256:../../../../etc/passwd"}]}'
    ),
    "layer-size-big": _oci_with(size="big"),
    "layer-size-negative": _oci_with(size=-5),
    "layer-size-wrong": _oci_with(size=3),
    "layers-is-a-string": _oci_with(layers="x"),
    "layer-is-a-number": _oci_with(layers=[1]),
    "manifest-config-is-a-list": _oci_with(config_raw=b"[1, 2]"),
    "config-nested-100000": _oci_with(config_raw=DEEP),
    "config-config-is-a-list": _oci_with(config={"config": [1]}),
    "config-env-is-a-dict": _oci_with(config={"config": {"Env": {"A": 1}}}),
    "manifest-is-a-list": _oci_with(manifest_raw=b"[]"),
    "archive-index-points-to-itself": _as_archive(_oci_self_cycle),
    "archive-index-is-a-list": _as_archive(_oci_index(b"[]")),
    "archive-layer-size-big": _as_archive(_oci_with(size="big")),
    "docker-manifest-is-a-dict": _docker(b'{"Config": "config.json"}'),
    "docker-manifest-nested": _docker(DEEP),
    "docker-config-is-a-list": _docker(b'[{"Config": "config.json"}]', b"[]"),
    "docker-layers-is-a-string": _docker(b'[{"Config": "config.json", "Layers": "x"}]'),
    "docker-repotags-is-a-number": _docker(b'[{"Config": "config.json", "RepoTags": 5}]'),
}


@pytest.mark.parametrize("case", sorted(OCI_CASES))
def test_crafted_oci_and_docker_images(case, tmp_path):
    path = OCI_CASES[case](tmp_path / case)
    for args in (["inspect", str(path)], ["inspect", "--json", str(path)]):
        r = slurmc(*args)
        assert_clean(r)
    assert not (tmp_path / "etc").exists()


# ---- SquashFS images with crafted contents ----------------------------------------------------


def _squash(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "rootfs"
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    out = tmp_path / "img.sqfs"
    subprocess.run(
        ["mksquashfs", str(root), str(out), "-noappend", "-quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


SQUASH_CASES = {
    "conda-meta-nested-100000": {"opt/conda/conda-meta/pkg-1.0-0.json": DEEP},
    "conda-meta-a-list": {"opt/conda/conda-meta/pkg-1.0-0.json": b"[1]"},
    "conda-meta-not-utf8": {"opt/conda/conda-meta/pkg-1.0-0.json": b'{"name": "\xff"}'},
    "labels-nested": {".singularity.d/labels.json": DEEP},
    "os-release-binary": {"etc/os-release": bytes(range(256)) * 4},
    "dist-info-metadata-binary": {
        "usr/lib/python3/dist-packages/x-1.dist-info/METADATA": b"\xff\xfe\x00" * 100
    },
}


@pytest.mark.parametrize("case", sorted(SQUASH_CASES))
def test_crafted_image_contents(case, tmp_path):
    img = _squash(tmp_path, SQUASH_CASES[case])
    assert_clean(slurmc("inspect", str(img)))
    r = slurmc("run", "--site", "devcluster", "--dry-run", str(img), "--", "true", cwd=tmp_path)
    assert_clean(r)


@pytest.mark.parametrize(
    "data",
    [
        b"hsqs" + b"\0" * 92,
        b"hsqs" + b"\xff" * 200,
        b"\0" * 32 + b"SIF_MAGIC\0" + b"\xff" * 200,
        b"\0" * 32 + b"SIF_MAGIC\0" + b"\0" * 4096,
        b"",
        b"\x89PNG" * 100,
    ],
    ids=["sqfs-zero", "sqfs-ff", "sif-ff", "sif-zero", "empty", "png"],
)
def test_crafted_headers(data, tmp_path):
    f = tmp_path / "img.sif"
    f.write_bytes(data)
    assert_clean(slurmc("inspect", str(f)))
    assert_clean(slurmc("inspect", "--json", str(f)))


# ---- site files ------------------------------------------------------------------------------

GOOD_SITE = b'name = "fuzzsite"\n[runtime]\nkind = "charliecloud"\n'

SITE_CASES = {
    "not-utf8": b'name = "x\xff"\n',
    "nested-5000-arrays": b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "nul-in-cache-path": GOOD_SITE + b'[images]\ncache = ["/tmp/a\\u0000b"]\n',
    "table-where-a-string-goes": b"name = { a = 1 }\n",
    "tilde-unknown-user": GOOD_SITE + b'[images]\ncache = ["~nosuchuser-slurmc/x"]\n',
    "control-chars": b'name = "a\\u001b[2J"\n',
    "huge-integer": b"x = " + b"9" * 5000 + b"\n",
}


@pytest.mark.parametrize("case", sorted(SITE_CASES))
def test_crafted_site_files(case, tmp_path):
    site = tmp_path / f"{case}.toml"
    site.write_bytes(SITE_CASES[case])
    assert_clean(slurmc("site", "check", str(site)), must_fail=case != "tilde-unknown-user")
    r = slurmc("cache", "ls", "--site", str(site))
    assert_clean(r, must_fail=case != "tilde-unknown-user")


def test_tilde_user_is_that_users_home_never_home_plus_name():
    from slurmc.core.sites import expand
    from slurmc.errors import ConfigError

    env = {"HOME": "/home/alice"}
    assert expand("~/x", env, "k") == "/home/alice/x"
    assert expand("~root/x", env, "k") == os.path.expanduser("~root") + "/x"
    with pytest.raises(ConfigError, match="no user 'bob-nosuch'"):
        expand("~bob-nosuch/x", env, "k")


def test_an_invalid_site_file_on_the_path_is_skipped_with_a_warning(tmp_path):
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "aaa-broken.toml").write_bytes(b"name = \xff\n")
    (sites / "bbb-deep.toml").write_bytes(b"a = " + b"[" * 5000 + b"]" * 5000)
    (sites / "ccc-good.toml").write_text(
        'name = "ccc-good"\n[runtime]\nkind = "charliecloud"\n'
        '[detect]\nenv = { SLURMC_FUZZ = "1" }\n'
    )
    env = {
        "SLURMC_SITE_PATH": str(sites),
        "SLURMC_FUZZ": "1",
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "SLURMC_SITE": "",
    }
    r = slurmc("site", "show", env=env)
    assert r.returncode == 0, r.stderr
    assert "ccc-good" in r.stdout
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("slurmc: warning:")]
    assert any("aaa-broken.toml" in w for w in warnings) and any("bbb-deep" in w for w in warnings)


# ---- job records -----------------------------------------------------------------------------


def _record(job_id: object, **fields: object) -> dict:
    return {
        "schema": 1,
        "job_id": job_id,
        "cluster": "c",
        "site": "devcluster",
        "submitted_at": "2026-01-01T00:00:00+0000",
        "command_line": "true",
        "image": {"spec": "img", "path": "/nonexistent", "source": "path", "size": 5},
        "final": {"state": "COMPLETED", "exit_code": 0, "signal": None},
        **fields,
    }


RECORD_CASES = {
    "image-is-a-string": json.dumps(_record("11", image="x")).encode(),
    "final-is-a-string": json.dumps(_record("12", final="COMPLETED")).encode(),
    "job-id-is-a-list": json.dumps(_record([1])).encode(),
    "nested-100000": DEEP,
    "size-is-a-string": json.dumps(
        _record("15", image={"spec": "i", "path": "/x", "size": "big"})
    ).encode(),
    "not-utf8": b'{"job_id": "16", "site": "\xff"}',
    "a-list": b"[1, 2]",
    "job-id-unicode-digits": json.dumps(_record("\u0661\u0667")).encode(),
    "exit-code-is-a-string": json.dumps(
        _record("18", final={"state": "FAILED", "exit_code": "1"})
    ).encode(),
}


@pytest.fixture
def state(tmp_path):
    jobs = tmp_path / "state" / "slurmc" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "10.c.json").write_text(json.dumps(_record("10")))
    for i, (_case, data) in enumerate(sorted(RECORD_CASES.items())):
        (jobs / f"{11 + i}.c.json").write_bytes(data)
    before = {p.name: p.read_bytes() for p in jobs.iterdir()}
    yield {"XDG_STATE_HOME": str(tmp_path / "state"), "SLURM_CONF": "/nonexistent"}, jobs
    after = {p.name: p.read_bytes() for p in jobs.iterdir()}
    assert after == before  # damaged records are reported, never rewritten or removed


def test_damaged_records_are_reported_by_name_and_skipped(state):
    env, _ = state
    r = slurmc("jobs", "--last", "0", env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = [ln for ln in r.stdout.splitlines()[1:] if ln.strip()]
    assert [row.split()[0] for row in rows] == ["10"]
    warned = [ln for ln in r.stderr.splitlines() if "damaged job record" in ln]
    assert len(warned) == len(RECORD_CASES)
    r = slurmc("jobs", "--json", "--last", "0", env=env)
    assert r.returncode == 0 and [row["job_id"] for row in json.loads(r.stdout)] == ["10"]


@pytest.mark.parametrize("job_id", [str(11 + i) for i in range(len(RECORD_CASES))] + ["10"])
def test_jobs_show_and_logs_of_damaged_records(state, job_id):
    env, _ = state
    for sub in ("show", "logs"):
        r = slurmc("jobs", sub, job_id, env=env)
        assert_clean(r, must_fail=job_id != "10" or sub == "logs")


def test_jobs_logs_on_a_fifo_does_not_hang(tmp_path):
    jobs = tmp_path / "state" / "slurmc" / "jobs"
    jobs.mkdir(parents=True)
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    (jobs / "20.c.json").write_text(json.dumps(_record("20", output=str(fifo))))
    r = slurmc("jobs", "logs", "20", env={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert_clean(r, must_fail=True)
    assert "not a regular file" in r.stderr and r.elapsed < 10  # type: ignore[attr-defined]


# ---- ids, numbers, names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "cancel", str(4294967296 + 1)],
        ["jobs", "cancel", "١٢٣"],
        ["jobs", "cancel", "4294967295"],
        ["jobs", "show", str(2**64)],
        ["run", "--site", "devcluster", "--dry-run", "--time", "١٢٣", "x.sqfs", "--", "true"],
        ["run", "--site", "devcluster", "--dry-run", "--mem", "٨G", "x.sqfs", "--", "true"],
        ["run", "--site", "devcluster", "--dry-run", "--nodes", "٢", "x.sqfs", "--", "true"],
        [
            "run",
            "--site",
            "devcluster",
            "--dry-run",
            "--gpus-per-node",
            "٨",
            "x.sqfs",
            "--",
            "true",
        ],
        [
            "run",
            "--site",
            "devcluster",
            "--dry-run",
            "--sbatch-arg=--hold --comment=x",
            "x.sqfs",
            "--",
            "true",
        ],
        ["run", "--site", "devcluster", "--dry-run", "--sbatch-arg=--co=x", "x.sqfs", "--", "true"],
    ],
    ids=lambda a: " ".join(a)[:60],
)
def test_hostile_ids_and_numbers_are_one_line(args, tmp_path):
    r = slurmc(*args, env={"XDG_STATE_HOME": str(tmp_path)}, cwd=tmp_path)
    assert_clean(r, must_fail=True)


def test_a_reference_too_long_for_the_lock_name_is_one_clear_line(tmp_path):
    ref = "127.0.0.1:5443/team/" + "n" * 200 + ":" + "t" * 40  # name 246 bytes, lock name more
    r = slurmc("cache", "pull", "--site", "devcluster", "--cache-dir", str(tmp_path / "c"), ref)
    assert_clean(r, must_fail=True)
    assert "255-byte limit" in r.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*n" * 10))


# ---- the door to subprocess ------------------------------------------------------------------


def test_a_tool_that_cannot_be_run_and_output_that_is_not_utf8(tmp_path):
    from slurmc import proc
    from slurmc.errors import ToolMissingError

    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o644)
    with pytest.raises(ToolMissingError, match=r"exists but cannot be run \(Permission denied\)"):
        proc.run([str(tool)])
    tool.write_bytes(b"\x7fELF garbage")
    tool.chmod(0o755)
    with pytest.raises(ToolMissingError, match="cannot be run"):
        proc.run([str(tool)])
    out = proc.run(["printf", "\\377\\376ok\\n"]).stdout
    # the door keeps the bytes (surrogateescape): a file name read from a listing can
    # be read back; a message shows them as U+FFFD, never a UnicodeEncodeError
    assert out.encode("utf-8", "surrogateescape") == b"\xff\xfeok\n"
    from slurmc.errors import ExternalCommandError

    with pytest.raises(ExternalCommandError) as exc:
        proc.run(["sh", "-c", "printf '\\377 bad\\n' >&2; exit 3"])
    message = str(exc.value)
    assert "\ufffd bad" in message
    message.encode("utf-8")  # printable as it is
