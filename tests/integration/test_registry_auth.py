"""Private registries and moving tags, for real (issue 15, parts 1 and 2).

scripts/registry serves the same storage twice: open on SLURMC_TEST_REGISTRY and behind
htpasswd basic auth on SLURMC_TEST_REGISTRY_AUTH. Images are pushed to the open one and
pulled from the other through the real Charliecloud, the real Apptainer and the real
Podman, with the login from slurmc's credentials file or from --password-stdin. While
a pull runs, a watcher reads every process's command line; afterwards every file slurmc
wrote is searched: the password must be in neither. The digests slurmc records are
checked against skopeo's, and --refresh against the registry's own access log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO, RealApptainer, slurmc, submitted_id, wait_job
from .test_cache_pull import Registry

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class AuthRegistry(Registry):
    """The authenticating twin (host, CA, its own access log), the open one beside it."""

    open_host: str = ""
    user: str = ""
    password: str = ""


@pytest.fixture(scope="module")
def auth_registry() -> AuthRegistry:
    r = subprocess.run([REPO / "scripts" / "registry", "up"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in r.stdout.splitlines()
        if line.startswith("export ")
    )
    return AuthRegistry(
        host=exports["SLURMC_TEST_REGISTRY_AUTH"],
        ca_bundle=exports["SLURMC_REGISTRY_CA_BUNDLE"],
        log=Path(exports["SLURMC_REGISTRY_AUTH_LOG"]),
        open_host=exports["SLURMC_TEST_REGISTRY"],
        user=exports["SLURMC_TEST_REGISTRY_USER"],
        password=Path(exports["SLURMC_TEST_REGISTRY_PASSWORD_FILE"]).read_text().strip(),
    )


def _push(registry: AuthRegistry, rootfs: Path, repo: str) -> None:
    """Push through the open registry: the authenticating one serves the same storage."""
    r = subprocess.run(
        [REPO / "scripts" / "push-test-image", str(rootfs), f"{registry.open_host}/{repo}"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def private(auth_registry, images) -> dict[str, str]:
    """References (through the authenticating registry) to fresh repositories."""
    run = uuid.uuid4().hex[:8]
    plain = images.plain_sqfs.parent / "rootfs"
    repos = {name: f"private/{name}-{run}:v1" for name in ("file", "stdin", "apptainer", "podman")}
    for repo in repos.values():
        _push(auth_registry, plain, repo)
    return {name: f"{auth_registry.host}/{repo}" for name, repo in repos.items()}


@pytest.fixture
def home(tmp_path: Path, auth_registry: AuthRegistry) -> dict[str, str]:
    """A user's own XDG directories (no credentials yet) and the registry's CA."""
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json"),
        "REQUESTS_CA_BUNDLE": auth_registry.ca_bundle,
        "SSL_CERT_FILE": auth_registry.ca_bundle,
        "TMPDIR": str(tmp_path / "tmp"),
    }
    (tmp_path / "tmp").mkdir()
    return env


def _credentials(env: dict[str, str], registry: AuthRegistry, mode: int = 0o600) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "slurmc" / "credentials"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"machine {registry.host} login {registry.user} password {registry.password}\n")
    path.chmod(mode)
    return path


class CommandLines:
    """Reads every process's command line about every 5 ms while a pull runs."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            self.seen.add(fh.read())
                    except OSError:
                        pass
            time.sleep(0.005)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _files_holding(secret: str, *roots: Path, skip: Path | None = None) -> list[str]:
    found = []
    for root in roots:
        for d, _, files in os.walk(root):
            for name in files:
                p = Path(d, name)
                if p == skip or p.is_symlink() or not p.is_file():
                    continue
                if p.suffix in (".sqfs", ".sif", ".tar", ".sqsh"):
                    continue  # the image itself: the registry's bytes, not slurmc's
                if secret.encode() in p.read_bytes():
                    found.append(str(p))
    return found


def _skopeo_digest(ref: str, registry: AuthRegistry) -> str:
    r = subprocess.run(
        ["skopeo", "inspect", "--creds", f"{registry.user}:{registry.password}", f"docker://{ref}"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["Digest"])


def _images_in(root: Path) -> list[Path]:
    return [Path(d, f) for d, _, files in os.walk(root) for f in files if not f.startswith(".")]


def test_without_a_login_one_line_names_the_registry_and_nothing_is_cached(
    cluster, auth_registry, private, home, tmp_path
):
    root = tmp_path / "cache"
    r = slurmc(
        "cache", "pull", "--site", "devcluster", "--cache-dir", str(root), private["file"],
        cwd=tmp_path, env=home,
    )  # fmt: skip
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"registry {auth_registry.host} wants a login" in lines[0]
    assert "slurmc cache pull --username USER --save" in lines[0]
    assert _images_in(root) == []


def test_login_from_the_credentials_file_pulls_through_charliecloud_and_the_secret_is_nowhere(
    cluster, auth_registry, private, home, tmp_path
):
    creds = _credentials(home, auth_registry)
    root = tmp_path / "cache"
    with CommandLines() as watcher:
        r = slurmc(
            "cache", "pull", "--site", "devcluster", "--cache-dir", str(root), private["file"],
            cwd=tmp_path, env=home,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    image = Path(r.stdout.strip())
    # ch-convert's work directory went with the pull's scratch, not left in $TMPDIR
    assert list(Path(home["TMPDIR"]).glob("ch-convert.*")) == []
    assert any(b"ch-image" in c for c in watcher.seen)  # the watcher saw the pull run
    assert not [c for c in watcher.seen if auth_registry.password.encode() in c]
    assert auth_registry.password not in r.stdout + r.stderr
    assert _files_holding(auth_registry.password, tmp_path, skip=creds) == []
    ran = subprocess.run(
        ["ch-run", str(image), "--", "cat", "/etc/os-release"], capture_output=True
    )
    assert ran.returncode == 0 and b"slurmc test image" in ran.stdout
    # the digest recorded beside it is the registry's, as skopeo (not slurmc) reads it
    listing = slurmc(
        "cache", "ls", "--json", "--site", "devcluster", "--cache-dir", str(root),
        cwd=tmp_path, env=home,
    )  # fmt: skip
    (entry,) = json.loads(listing.stdout)
    assert entry["digest"] == _skopeo_digest(private["file"], auth_registry)
    assert entry["sha256"] and entry["pulled_by"]


def test_password_from_stdin_then_saved_for_the_next_pull(
    cluster, auth_registry, private, home, tmp_path
):
    root = tmp_path / "cache"
    r = slurmc(
        "cache", "pull", "--site", "devcluster", "--cache-dir", str(root),
        "--username", auth_registry.user, "--password-stdin", "--save", private["stdin"],
        cwd=tmp_path, env=home, input=auth_registry.password + "\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    saved = Path(home["XDG_CONFIG_HOME"]) / "slurmc" / "credentials"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert f"machine {auth_registry.host} login {auth_registry.user}" in saved.read_text()
    assert auth_registry.password not in r.stdout + r.stderr
    again = slurmc(
        "cache", "pull", "--site", "devcluster", "--cache-dir", str(tmp_path / "other"),
        private["stdin"], cwd=tmp_path, env=home,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_a_wrong_password_and_a_readable_file_are_one_line_each(
    cluster, auth_registry, private, home, tmp_path
):
    root = tmp_path / "cache"
    r = slurmc(
        "cache", "pull", "--site", "devcluster", "--cache-dir", str(root),
        "--username", auth_registry.user, "--password-stdin", private["file"],
        cwd=tmp_path, env=home, input="not-the-password\n",
    )  # fmt: skip
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"refused the login of {auth_registry.user}" in r.stderr
    assert "not-the-password" not in r.stderr
    creds = _credentials(home, auth_registry, mode=0o640)
    r = slurmc(
        "cache", "pull", "--site", "devcluster", "--cache-dir", str(root), private["file"],
        cwd=tmp_path, env=home,
    )  # fmt: skip
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"chmod 600 {creds}" in r.stderr
    assert _images_in(root) == []


def test_real_apptainer_and_real_podman_take_the_login_their_own_way(
    cluster, auth_registry, private, home, tmp_path, real_apptainer: RealApptainer
):
    creds = _credentials(home, auth_registry)
    site = str(real_apptainer.site("determined", tmp_path))
    with CommandLines() as watcher:
        r = slurmc(
            "cache", "pull", "--site", site, "--cache-dir", str(tmp_path / "sif"),
            private["apptainer"], cwd=tmp_path, env={**real_apptainer.env, **home},
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).read_bytes()[32:41] == b"SIF_MAGIC"
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n')
    with CommandLines() as podman_watcher:
        r = slurmc(
            "cache", "pull", "--site", "podman", "--cache-dir", str(tmp_path / "oci"),
            private["podman"], cwd=tmp_path, env={**home, "CONTAINERS_CONF": str(conf)},
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).stat().st_size > 0
    seen = watcher.seen | podman_watcher.seen
    assert any(b"apptainer" in c for c in seen) and any(b"podman" in c for c in seen)
    assert not [c for c in seen if auth_registry.password.encode() in c]
    assert _files_holding(auth_registry.password, tmp_path, skip=creds) == []


def test_the_enroot_double_reads_the_login_from_its_private_credentials_file(
    cluster, auth_registry, images, home, tmp_path, doubles
):
    """Enroot through its double (real enroot cannot be installed here): the login goes
    in ENROOT_CONFIG_PATH/.credentials, which the double reads as enroot does (curl's
    netrc) and answers the registry's Basic challenge with; ch-image gets it in its
    variables. Docker v2 schema 2, the manifest kind real enroot can pull."""
    creds = _credentials(home, auth_registry)
    repo = f"private/enroot-{uuid.uuid4().hex[:8]}:v1"
    r = subprocess.run(
        [
            REPO / "scripts" / "push-test-image",
            str(images.plain_sqfs.parent / "rootfs"),
            f"{auth_registry.open_host}/{repo}",
            "--format",
            "v2s2",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    env = {**home, "CURL_CA_BUNDLE": auth_registry.ca_bundle}
    root = tmp_path / "enroot-cache"
    with CommandLines() as watcher:
        r = slurmc(
            "cache", "pull", "--site", "nvidia-pyxis", "--nocreate", "--cache-dir", str(root),
            f"{auth_registry.host}/{repo}", cwd=tmp_path, env=env,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).is_file()
    assert any(b"enroot" in c for c in watcher.seen)
    assert not [c for c in watcher.seen if auth_registry.password.encode() in c]
    assert _files_holding(auth_registry.password, tmp_path, skip=creds) == []


def test_refresh_transfers_nothing_until_the_tag_moves(
    cluster, auth_registry, images, home, tmp_path
):
    _credentials(home, auth_registry)
    repo = f"private/moving-{uuid.uuid4().hex[:8]}"
    _push(auth_registry, images.plain_sqfs.parent / "rootfs", f"{repo}:v1")
    ref = f"{auth_registry.host}/{repo}:v1"
    root = tmp_path / "cache"
    args = ("cache", "pull", "--site", "devcluster", "--cache-dir", str(root))
    first = slurmc(*args, ref, cwd=tmp_path, env=home)
    assert first.returncode == 0, first.stderr
    image = Path(first.stdout.strip())
    before = image.read_bytes()
    offset = auth_registry.log_offset()
    same = slurmc(*args, "--refresh", ref, cwd=tmp_path, env=home)
    assert same.returncode == 0, same.stderr
    assert "is up to date" in same.stderr
    time.sleep(1)  # the registry logs a request after answering it
    assert auth_registry.blob_fetches(offset, repo) == 0
    assert image.read_bytes() == before
    # the tag moves: another image pushed under it
    _push(auth_registry, images.lumi_sqfs.parent / "rootfs", f"{repo}:v1")
    moved = slurmc(*args, "--refresh", ref, cwd=tmp_path, env=home)
    assert moved.returncode == 0, moved.stderr
    assert "moved to sha256:" in moved.stderr
    time.sleep(1)
    assert auth_registry.blob_fetches(offset, repo) >= 2
    assert image.read_bytes() != before
    listing = slurmc("cache", "ls", "--json", *args[2:], cwd=tmp_path, env=home)
    (entry,) = json.loads(listing.stdout)
    assert entry["digest"] == _skopeo_digest(ref, auth_registry)


def test_the_job_record_names_the_image_by_its_registry_digest(
    cluster, auth_registry, private, home, tmp_path
):
    _credentials(home, auth_registry)
    root = tmp_path / "cache"
    r = slurmc(
        "run", "--site", "devcluster", "--cache-dir", str(root), private["file"], "--", "true",
        cwd=tmp_path, env=home,
    )  # fmt: skip
    job = submitted_id(r)
    wait_job(job)
    shown = slurmc("jobs", "show", job, "--json", cwd=tmp_path, env=home)
    assert shown.returncode == 0, shown.stderr
    digest = json.loads(shown.stdout)["image"]["registry_digest"]
    assert digest == _skopeo_digest(private["file"], auth_registry)
    text = slurmc("jobs", "show", job, cwd=tmp_path, env=home).stdout
    assert re.search(rf"pulled\s+{re.escape(private['file'])}@{digest}", text), text
    assert shutil.which("slurmc")
