"""Real pulls from a real registry on 127.0.0.1, through the cache's lock (issue 3)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO, double_calls, output_of, slurmc, submitted_id, wait_job

pytestmark = pytest.mark.cluster

BLOB_GET = re.compile(
    r'"GET /v2/(?P<name>[^ "]+)/blobs/(?P<digest>sha256:[0-9a-f]{64})(?:\?[^ "]*)? HTTP/[0-9.]+" '
    r"(?P<status>\d{3}) "
)


@dataclass(frozen=True)
class Registry:
    host: str
    ca_bundle: str
    log: Path

    def blob_fetches(self, offset: int, name: str) -> int:
        with open(self.log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        return sum(1 for m in BLOB_GET.finditer(text) if m["name"] == name and m["status"] == "200")

    def log_offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    script = REPO / "scripts" / "registry"
    was_up = subprocess.run([script, "status"], capture_output=True).returncode == 0
    r = subprocess.run([script, "up"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"scripts/registry up failed:\n{r.stderr[-3000:]}")
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in r.stdout.splitlines()
        if line.startswith("export ")
    )
    yield Registry(
        exports["SLURMC_TEST_REGISTRY"],
        exports["SLURMC_REGISTRY_CA_BUNDLE"],
        Path(exports["SLURMC_REGISTRY_LOG"]),
    )
    if not was_up:
        subprocess.run([script, "down"], capture_output=True)


def push(registry: Registry, rootfs: Path, repo: str, *env: str, fmt: str = "oci") -> str:
    ref = f"{registry.host}/{repo}"
    args = [str(REPO / "scripts" / "push-test-image"), str(rootfs), ref, "--format", fmt]
    for e in env:
        args += ["--env", e]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ref


@pytest.fixture(scope="session")
def pushed(registry, images) -> dict[str, str]:
    """The test images in the registry, under repositories unique to this session."""
    run = uuid.uuid4().hex[:8]
    lumi_root = images.lumi_sqfs.parent / "rootfs"
    plain_root = images.plain_sqfs.parent / "rootfs"
    return {
        "plain": push(registry, plain_root, f"slurmc/plain-{run}:v1"),
        "lumi": push(
            registry,
            lumi_root,
            f"slurmc/lumi-{run}:v1",
            "WITH_CONDA=source /opt/miniconda3/bin/activate pytorch",
        ),
        # Docker v2 schema 2: the kind real enroot can pull from docker-registry 2.8
        "plain_v2s2": push(registry, plain_root, f"slurmc/plain2-{run}:v1", fmt="v2s2"),
        "concurrent": push(registry, plain_root, f"slurmc/conc-{run}:v1"),
        "killed": push(registry, plain_root, f"slurmc/killed-{run}:v1"),
    }


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at *path* for the duration (a full or read-only cache)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def pull_env(registry: Registry) -> dict[str, str]:
    """The registry's CA for ch-image (requests) and for enroot (curl)."""
    return {"REQUESTS_CA_BUNDLE": registry.ca_bundle, "CURL_CA_BUNDLE": registry.ca_bundle}


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
V2S2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def manifest_type(registry: Registry, ref: str) -> str:
    """The media type the registry stored for *ref*'s manifest."""
    host, rest = ref.split("/", 1)
    name, tag = rest.rsplit(":", 1)
    req = urllib.request.Request(
        f"https://{host}/v2/{name}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": f"{OCI_MANIFEST}, {V2S2_MANIFEST}"},
    )
    ctx = ssl.create_default_context(cafile=registry.ca_bundle)
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        return r.headers["Content-Type"]


def test_sixteen_concurrent_pulls_one_transfer(cluster, registry, pushed, tmp_path):
    ref = pushed["concurrent"]
    name = ref.split("/", 1)[1].split(":")[0]
    root = tmp_path / "cache"
    offset = registry.log_offset()
    exe = [shutil.which("slurmc") or "slurmc"]
    procs = [
        subprocess.Popen(
            [*exe, "cache", "pull", "--site", "devcluster", "--cache-dir", str(root), ref],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **pull_env(registry)},
        )
        for _ in range(16)
    ]
    results = [(*reversed(p.communicate(timeout=300)), p.returncode)[::-1] for p in procs]
    assert all(code == 0 for code, _, _ in results), [err for _, _, err in results]
    paths = {out.strip() for _, out, _ in results}
    assert len(paths) == 1
    path = paths.pop()
    time.sleep(1)  # the registry logs a request after answering it
    # config + one layer: each fetched once, for all 16 callers
    assert registry.blob_fetches(offset, name) == 2
    waited = [err for _, _, err in results if "waiting for the pull" in err]
    assert waited and "pid" in waited[0]  # the waiters were told who holds the lock
    r = subprocess.run(
        ["ch-run", path, "--", "cat", "/etc/os-release"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "slurmc test image" in r.stdout
    name = os.path.basename(path)  # no lock or leftover; its provenance beside it, once
    assert sorted(os.listdir(os.path.dirname(path))) == [f".{name}.meta.json", name]


def test_sigkill_mid_pull_leaves_nothing_and_the_next_pull_succeeds(
    cluster, registry, pushed, tmp_path
):
    ref = pushed["killed"]
    root = tmp_path / "cache"
    exe = shutil.which("slurmc") or "slurmc"
    p = subprocess.Popen(
        [exe, "cache", "pull", "--site", "devcluster", "--cache-dir", str(root), ref],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **pull_env(registry)},
    )
    final = root / (ref + ".sqfs")

    def lock_taken() -> bool:
        return final.parent.is_dir() and any(final.parent.glob(".*.lock"))

    deadline = time.monotonic() + 60
    while not lock_taken():
        assert time.monotonic() < deadline, "the pull never took its lock"
        time.sleep(0.05)
    time.sleep(1.5)  # well into the pull (ch-image pull / ch-convert)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not final.exists()  # never a partial image at the final name
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "devcluster",
        "--cache-dir",
        str(root),
        ref,
        cwd=tmp_path,
        env=pull_env(registry),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(final) and final.is_file()
    # lock and leftovers gone; the provenance of the pull that finished beside the image
    assert sorted(os.listdir(final.parent)) == [f".{final.name}.meta.json", final.name]


def test_tiny_file_system_fills_up_clear_error_nothing_published(
    cluster, registry, pushed, tmp_path
):
    with tmpfs(tmp_path / "tiny", "size=2m") as tiny:
        r = slurmc(
            "cache",
            "pull",
            "--site",
            "devcluster",
            "--cache-dir",
            str(tiny),
            pushed["plain"],
            cwd=tmp_path,
            env=pull_env(registry),
        )
        assert r.returncode == 1
        error = r.stderr.splitlines()[-1]  # after the progress notice, one error line
        assert error.startswith("slurmc: error: no space left") and "Traceback" not in r.stderr
        files = [os.path.join(d, f) for d, _, fs in os.walk(tiny) for f in fs]
        assert files == []


def test_read_only_cache_is_a_clear_error(cluster, registry, pushed, tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        r = slurmc(
            "cache",
            "pull",
            "--site",
            "devcluster",
            "--cache-dir",
            str(ro),
            pushed["plain"],
            cwd=tmp_path,
            env=pull_env(registry),
        )
        assert r.returncode == 1 and r.stderr.count("\n") == 1
        assert "read-only file system" in r.stderr.lower() and "Traceback" not in r.stderr


def test_unreachable_registry_says_how_to_add_the_image(cluster, tmp_path):
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "devcluster",
        "--cache-dir",
        str(tmp_path / "c"),
        "127.0.0.1:1/team/model:v2",
        cwd=tmp_path,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "cannot reach registry 127.0.0.1:1" in r.stderr
    assert "ch-image pull 127.0.0.1:1/team/model:v2" in r.stderr
    assert "slurmc cache add FILE 127.0.0.1:1/team/model:v2" in r.stderr
    assert not (tmp_path / "c").exists()  # nothing created


def test_run_pulls_a_missing_image_then_submits(cluster, registry, pushed, tmp_path):
    root = tmp_path / "cache"
    r = slurmc(
        "run",
        "--site",
        "devcluster",
        "--cache-dir",
        str(root),
        pushed["lumi"],
        "--",
        "python",
        "-c",
        "import os, slurmc_probe; print(os.environ['CONDA_DEFAULT_ENV'])",
        cwd=tmp_path,
        env=pull_env(registry),
    )
    job = submitted_id(r)
    assert "pulling " in r.stderr
    fields = wait_job(job)
    text = output_of(r).read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert "pytorch" in text  # the pulled image's WITH_CONDA, from its OCI config
    assert (root / (pushed["lumi"] + ".sqfs")).is_file()


def test_cache_ls_add_rm_verify(cluster, images, tmp_path):
    root = str(tmp_path / "cache")
    common = ("--site", "devcluster", "--cache-dir", root)
    r = slurmc("cache", "add", str(images.plain_sqfs), "team/img:v1", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = slurmc("cache", "ls", "--json", *common, cwd=tmp_path)
    listed = json.loads(r.stdout)
    assert [e["reference"] for e in listed] == ["team/img:v1"]
    assert listed[0]["size"] == images.plain_sqfs.stat().st_size
    assert slurmc("cache", "verify", *common, cwd=tmp_path).returncode == 0
    r = slurmc("cache", "rm", "team/img:v1", *common, cwd=tmp_path)
    assert (
        r.returncode == 0
        and json.loads(slurmc("cache", "ls", "--json", *common, cwd=tmp_path).stdout) == []
    )


@pytest.mark.parametrize(
    "ref",
    ["a/../b:1", "../../etc/passwd", "a/b:" + "t" * 200, "x/" + "y" * 250 + ":1", "UP/per:1"],
)
def test_hostile_references_are_refused_before_touching_the_cache(cluster, tmp_path, ref):
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "devcluster",
        "--cache-dir",
        str(tmp_path / "c"),
        ref,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "c").exists()


def test_site_that_pulls_inside_the_job(cluster, registry, pushed, tmp_path):
    """Login nodes without the runtime: the job pulls the image first, then runs it."""
    site = tmp_path / "pull-in-job.toml"
    site.write_text(
        (REPO / "site-configs" / "devcluster.toml")
        .read_text()
        .replace("[images]\n", '[images]\npull = "job"\n')
        .replace('name = "devcluster"', 'name = "pull-in-job"')
        .replace('cluster_name = "devcluster"', 'cluster_name = "nowhere"')
    )
    root = tmp_path / "cache"
    ref = pushed["plain"]
    r = slurmc(
        "run",
        "--site",
        str(site),
        "--cache-dir",
        str(root),
        ref,
        "--",
        "cat",
        "/etc/os-release",
        cwd=tmp_path,
        env=pull_env(registry),
    )
    job = submitted_id(r)
    assert "pulling" not in r.stderr  # nothing pulled on the login node
    fields = wait_job(job, timeout=180)
    out = output_of(r)
    assert out.exists(), (fields, r.stdout, r.stderr)  # the job's state when it wrote none
    text = out.read_text()
    assert fields["JobState"] == "COMPLETED", text
    assert "slurmc test image" in text and (root / (ref + ".sqfs")).is_file()


def test_singularity_pull_through_the_double_in_determined_layout(
    cluster, registry, pushed, doubles, tmp_path
):
    """lumi/determined sites pull with `singularity pull DEST docker://REF` into a SIF file."""
    root = tmp_path / "singularity_image_root"
    ref = pushed["plain"]
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "determined",
        "--cache-dir",
        str(root),
        ref,
        cwd=tmp_path,
        env=pull_env(registry),
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path == root / ref  # no suffix: Determined's singularity_image_root layout
    assert path.read_bytes()[32:41] == b"SIF_MAGIC"
    pulls = [c["argv"] for c in double_calls(doubles, "singularity") if c["argv"][0] == "pull"]
    assert pulls and pulls[-1][2] == f"docker://{ref}"
    # and a job runs it, resolved from the cache by reference
    r = slurmc(
        "run",
        "--site",
        "determined",
        "--partition",
        "small",
        "--cache-dir",
        str(root),
        ref,
        "--",
        "cat",
        "/etc/os-release",
        cwd=tmp_path,
    )
    job = submitted_id(r)
    assert wait_job(job)["JobState"] == "COMPLETED"
    assert "slurmc test image" in output_of(r).read_text()


def test_enroot_import_and_per_user_create(cluster, registry, pushed, doubles, tmp_path):
    root = tmp_path / "enroot-cache"
    data = tmp_path / "enroot-data"
    env = {**pull_env(registry), "ENROOT_DATA_PATH": str(data)}
    ref = pushed["plain_v2s2"]
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "nvidia-pyxis",
        "--cache-dir",
        str(root),
        ref,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == root / (ref + ".sqsh")
    host, path = ref.split("/", 1)
    imports = [c["argv"] for c in double_calls(doubles, "enroot") if c["argv"][0] == "import"]
    assert imports[-1][-1] == f"docker://{host}#{path}"  # enroot's REGISTRY#IMAGE form
    name = path.replace("/", "+").replace(":", "+")
    assert f"enroot container {name} created" in r.stderr
    assert (data / name).is_dir()
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "nvidia-pyxis",
        "--cache-dir",
        str(root),
        ref,
        cwd=tmp_path,
        env=env,
    )
    assert "already exists" in r.stderr
    other = tmp_path / "other"
    r = slurmc(
        "cache",
        "pull",
        "--site",
        "nvidia-pyxis",
        "--cache-dir",
        str(other),
        "--nocreate",
        ref,
        cwd=tmp_path,
        env={**env, "ENROOT_DATA_PATH": str(tmp_path / "d2")},
    )
    assert r.returncode == 0 and "enroot container" not in r.stderr
    d2 = tmp_path / "d2"  # enroot makes its data dir on any command, but no container in it
    assert not d2.exists() or not any(d2.iterdir())


def test_podman_pull_and_save_oci_archive(cluster, registry, pushed, tmp_path):
    """The podman site pulls with the real podman (pull + save --format=oci-archive)."""
    root = tmp_path / "oci"
    ref = pushed["plain"]
    r = slurmc("cache", "pull", "--site", "podman", "--cache-dir", str(root), ref, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path == root / (ref.replace(":", "+") + ".oci.tar")  # podman refuses ':' in paths
    import tarfile

    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json"} <= names
    # the rendered script names it the way podman run takes it
    r = slurmc(
        "run",
        "--site",
        "podman",
        "--cache-dir",
        str(root),
        "--dry-run",
        ref,
        "--",
        "true",
        cwd=tmp_path,
    )
    assert f"oci-archive:{path}" in r.stdout


@pytest.mark.parametrize(
    ("kind", "media_type"), [("plain", OCI_MANIFEST), ("plain_v2s2", V2S2_MANIFEST)]
)
def test_real_ch_image_pulls_both_manifest_kinds_without_user(
    cluster, registry, pushed, tmp_path, kind, media_type
):
    """Real ch-image + ch-convert, with $USER unset (ch-image: "can't get username")."""
    ref = pushed[kind]
    assert manifest_type(registry, ref) == media_type
    root = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "USER"}
    r = subprocess.run(
        [
            shutil.which("slurmc") or "slurmc",
            *("cache", "pull", "--site", "devcluster"),
            *("--cache-dir", str(root), ref),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, **pull_env(registry)},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path == root / (ref + ".sqfs")
    shown = subprocess.run(
        ["ch-run", str(path), "--", "cat", "/etc/os-release"], capture_output=True, text=True
    )
    assert "slurmc test image" in shown.stdout, shown.stderr


def test_enroot_pulls_docker_v2_and_refuses_oci_like_real_enroot(
    cluster, registry, pushed, doubles, tmp_path
):
    """The enroot double asks for the manifest as enroot 4.1.2 does (HEAD, no Accept):
    docker-registry 2.8 serves a Docker v2 schema 2 image and answers 404 for an OCI one."""
    root = tmp_path / "enroot-cache"
    env = {**pull_env(registry), "ENROOT_DATA_PATH": str(tmp_path / "data")}
    good = pushed["plain_v2s2"]
    args = ("cache", "pull", "--site", "nvidia-pyxis", "--cache-dir", str(root), "--nocreate")
    r = slurmc(*args, good, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    sqsh = Path(r.stdout.strip())
    shown = subprocess.run(["unsquashfs", "-cat", str(sqsh), "etc/os-release"], capture_output=True)
    assert b"slurmc test image" in shown.stdout
    bad = pushed["plain"]
    assert manifest_type(registry, bad) == OCI_MANIFEST
    r = slurmc(*args, bad, cwd=tmp_path, env=env)
    errors = [line for line in r.stderr.splitlines() if line.startswith("slurmc: error:")]
    assert r.returncode != 0 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "404 Not Found" in errors[0] and "nothing was published" in errors[0]
    assert not (root / (bad + ".sqsh")).exists()
