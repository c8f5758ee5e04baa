"""The real parts: a Slurm cluster on localhost, Charliecloud, test images, test doubles.

Nothing here skips: if the cluster or an image cannot be had, the tests fail,
because a skipped integration test is a gap, not a pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOUBLES = REPO / "tests" / "doubles" / "bin"
IMAGES_DIR = Path(os.environ.get("SLURMC_TEST_IMAGES", "/var/tmp/slurmc-test-images"))
#: host paths LUMI's bind set names; created for the LUMI tests when missing
LUMI_BIND_SOURCES = [
    "/var/spool/slurmd",
    "/opt/cray",
    "/pfs",
    "/scratch",
    "/projappl",
    "/project",
    "/flash",
    "/appl",
]
LUMI_BIND_FILES = ["/usr/lib64/libcxi.so.1", "/usr/lib64/libjansson.so.4"]


def _host_image_facts() -> tuple[str, str, str]:
    """What scripts/build-test-image copies from this machine into the test images:
    Debian's own python3 (X.Y and full version; 3.11 on Debian 12, 3.13 on Debian 13)
    and the Debian release (os-release VERSION_ID), asked of the host, not of the image."""
    full = subprocess.run(
        ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    release = "?"
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_ID="):
            release = line.split("=", 1)[1].strip('"')
    return ".".join(full.split(".")[:2]), full, release


#: the test images' python (X.Y, full version) and their os-release PRETTY_NAME
IMAGE_PYVER, IMAGE_PY_FULL, IMAGE_RELEASE = _host_image_facts()
IMAGE_OS = f"slurmc test image (Debian {IMAGE_RELEASE} userland)"
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running single-node Slurm; stopped afterwards if this session started it.

    Job records (slurmc's user state) go to a directory of this test session."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    script = REPO / "scripts" / "devcluster"
    was_up = subprocess.run([script, "status"], capture_output=True).returncode == 0
    r = subprocess.run([script, "up"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"scripts/devcluster up failed:\n{r.stderr[-3000:]}")
    conf = r.stdout.strip().split("=", 1)[1]
    os.environ["SLURM_CONF"] = conf
    os.environ.setdefault("USER", "root")
    yield conf
    if not was_up:
        subprocess.run([script, "down"], capture_output=True)


@dataclass(frozen=True)
class Images:
    lumi_sqfs: Path
    lumi_sif: Path
    plain_sqfs: Path
    plain_sif: Path


@pytest.fixture(scope="session")
def images() -> Images:
    """Real test images (SquashFS and SIF), built once from the host's own files."""
    out = {}
    for flavor in ("lumi", "plain"):
        d = IMAGES_DIR / flavor
        r = subprocess.run(
            [REPO / "scripts" / "build-test-image", d, "--flavor", flavor],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.fail(f"build-test-image {flavor} failed:\n{r.stderr[-3000:]}")
        out[flavor] = d
    imgs = Images(
        out["lumi"] / "image.sqfs",
        out["lumi"] / "image.sif",
        out["plain"] / "image.sqfs",
        out["plain"] / "image.sif",
    )
    for p in (imgs.lumi_sqfs, imgs.lumi_sif, imgs.plain_sqfs, imgs.plain_sif):
        assert p.is_file(), f"{p} was not built"
    return imgs


#: what makes `podman run` work in this sandbox (crun/runc cannot set RLIMIT_NOFILE here,
#: then "cgroups in hybrid mode not supported"); given to podman through CONTAINERS_CONF
PODMAN_CONF = """[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Real Podman for the test processes and the steps they run (which inherit the
    environment): CONTAINERS_CONF names a containers.conf of this session's own."""
    for tool in ("podman", "runc"):
        assert shutil.which(tool), f"{tool} not installed (scripts/devcluster install)"
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(PODMAN_CONF)
    old = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(conf)
    yield conf
    if old is None:
        os.environ.pop("CONTAINERS_CONF", None)
    else:
        os.environ["CONTAINERS_CONF"] = old


@pytest.fixture(scope="session")
def oci_image(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain test image as an OCI archive (umoci builds the layout, tar packs it),
    the format of the podman site's cache; no registry needed."""
    d = tmp_path_factory.mktemp("oci")
    layout, rootfs = d / "layout", images.plain_sqfs.parent / "rootfs"
    steps = [
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:img"],
        ["umoci", "insert", "--rootless", "--image", f"{layout}:img", str(rootfs), "/"],
        ["umoci", "config", "--image", f"{layout}:img", "--config.env", f"PATH={DEFAULT_PATH}"],
        ["tar", "-C", str(layout), "-cf", str(d / "plain.oci.tar"), "."],
    ]
    for argv in steps:
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == 0, f"{argv}: {r.stderr[-2000:]}"
    return d / "plain.oci.tar"


@pytest.fixture(scope="session")
def doubles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Apptainer/Singularity, Enroot and Pyxis doubles first on PATH (jobs inherit it)."""
    log = tmp_path_factory.mktemp("doubles") / "calls.jsonl"
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{DOUBLES}:{old_path}"
    os.environ["SLURMC_DOUBLE_LOG"] = str(log)
    yield log
    os.environ["PATH"] = old_path
    os.environ.pop("SLURMC_DOUBLE_LOG", None)


def double_calls(log: Path, tool: str) -> list[dict]:
    if not log.exists():
        return []
    calls = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [c for c in calls if c.get("tool") == tool]


@pytest.fixture(scope="session")
def lumi_host_paths() -> Iterator[None]:
    """Make the LUMI bind sources exist on this machine, as they do on LUMI."""
    made: list[str] = []
    for d in LUMI_BIND_SOURCES:
        if not os.path.exists(d):
            os.makedirs(d)
            made.append(d)
    for f in LUMI_BIND_FILES:
        if not os.path.exists(f):
            os.makedirs(os.path.dirname(f), exist_ok=True)
            Path(f).touch()
            made.append(f)
    yield
    for p in reversed(made):
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.unlink(p)


def slurmc(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user would."""
    exe = shutil.which("slurmc")
    assert exe, "slurmc console script not installed"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [exe, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def job_ids() -> set[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def wait_job(job_id: str, timeout: float = 120) -> dict[str, str]:
    """Poll scontrol until the job ends; return its fields (JobState, ExitCode, ...)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True
        ).stdout
        fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
        if fields.get("JobState") in FINAL_STATES:
            return fields
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not finish in {timeout} s: {fields}")
        time.sleep(0.3)


def submitted_id(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("Submitted job "), result.stdout
    return first.split()[2]


def output_of(result: subprocess.CompletedProcess[str]) -> Path:
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("Output: "))
    return Path(line[len("Output: ") :])


@dataclass(frozen=True)
class RealApptainer:
    """The real Apptainer (Debian unstable's 1.4.5, put in place by scripts/install-apptainer)."""

    exe: str
    #: what every call needs here: as root without CAP_SYS_RESOURCE, a user namespace
    env: dict[str, str]

    def site(self, name: str, directory: Path) -> Path:
        """A copy of the bundled site *name* whose runtime is this real apptainer."""
        text = (REPO / "site-configs" / f"{name}.toml").read_text()
        text = text.replace('kind = "singularity"', 'kind = "apptainer"')
        text = text.replace('executable = "singularity"', f'executable = "{self.exe}"')
        assert f'executable = "{self.exe}"' in text, f"{name}.toml: no executable line to replace"
        path = directory / f"{name}-real-apptainer.toml"
        path.write_text(text)
        return path


@pytest.fixture(scope="session")
def real_apptainer() -> RealApptainer:
    """The real tool, never the double: fails (no skip) when it is not installed."""
    check = subprocess.run([REPO / "scripts" / "install-apptainer", "--check"])
    if check.returncode != 0:
        pytest.fail("the real apptainer does not run: run scripts/install-apptainer (as root)")
    exe = "/usr/bin/apptainer"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("apptainer version 1."), version
    return RealApptainer(exe, {"APPTAINER_USERNS": "1"})
