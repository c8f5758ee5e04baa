"""The documentation site tells the truth (issue 16).

- the generated pages (CLI reference, troubleshooting) match the code;
- every command, site key and environment variable is documented;
- every code block in docs/ is either run here (``<!-- runs -->``) or marked as
  something else: ``<!-- example: real site -->`` (needs a real cluster's paths or
  images), ``<!-- output -->`` (what a command prints), ``<!-- tested in PATH -->``
  (run by that test), ``<!-- not run: REASON -->``;
- each row of the Determined migration table does what its notes say.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, double_calls, slurmc

DOCS = REPO / "docs"
GENERATED = {DOCS / "reference" / "cli.md", DOCS / "troubleshooting.md"}
MARKER = re.compile(
    r"<!-- (runs|output|example: real site|tested in (?P<path>\S+)|not run: .+) -->"
)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if p not in GENERATED)


def blocks() -> list[tuple[Path, str, str]]:
    """(page, marker, code) for every fenced block of the hand-written pages."""
    found = []
    for page in pages():
        text = page.read_text()
        for m in FENCE.finditer(text):
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            found.append((page, before, m.group(2)))
    return found


def test_generated_pages_match_the_code():
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-reference"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def _commands(tmp_path: Path, *group: str) -> list[str]:
    r = slurmc(*group, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split("Commands:", 1)
    return (
        [line.split()[0] for line in listed[1].splitlines() if line.strip()] if listed[1:] else []
    )


def test_cli_reference_lists_every_command_of_the_help(tmp_path):
    page = (DOCS / "reference" / "cli.md").read_text()
    top = _commands(tmp_path)
    assert {"run", "cache", "jobs", "venv", "site", "inspect"} <= set(top)
    for name in top:
        assert f"# `slurmc {name}`" in page, name
        for sub in _commands(tmp_path, name):
            assert f"# `slurmc {name} {sub}`" in page, f"{name} {sub}"
    run_help = slurmc("run", "--help", cwd=tmp_path).stdout
    for opt in set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]+)", run_help, re.M)) - {"--help"}:
        assert f"`{opt}`" in page, opt


def test_every_environment_variable_is_documented():
    page = (DOCS / "reference" / "environment.md").read_text()
    names: set[str] = set()
    for path in [*(REPO / "slurmc").rglob("*.py"), *(REPO / "site-configs").glob("*.toml")]:
        names |= set(re.findall(r"\bSLURMC_[A-Z_]+[A-Z]\b", path.read_text()))
    assert "SLURMC_SITE" in names
    for name in sorted(names):
        assert f"`{name}`" in page, name


def test_every_site_key_is_documented():
    source = (REPO / "slurmc" / "core" / "sites.py").read_text()
    body = source.split("def parse_site", 1)[1].split("def load_site_file", 1)[0]
    keys = set(re.findall(r"\.(?:get|choice|strings|str_map)\(\s*\"(\w+)\"", body))
    keys |= {"defaults"}  # read through _defaults(table, "defaults")
    table = (DOCS / "reference" / "sites.md").read_text().split("## Every key", 1)[1]
    documented = {m.split(".")[-1] for m in re.findall(r"^\| `([\w.]+)`", table, re.M)}
    assert len(keys) > 20
    assert keys <= documented, sorted(keys - documented)


def test_every_code_block_is_run_or_marked():
    found = blocks()
    assert len(found) > 20
    for page, before, _ in found:
        m = MARKER.fullmatch(before.strip())
        assert m, f"{page.relative_to(REPO)}: a code block without a marker (after {before!r})"
        if m["path"]:
            assert (REPO / m["path"]).exists(), m["path"]


@pytest.mark.cluster
def test_runnable_blocks_run_on_the_local_cluster(cluster, tmp_path):
    """Each `<!-- runs -->` block, as written, after `eval "$(scripts/env)"`."""
    runnable = [(p, code) for p, before, code in blocks() if before.strip() == "<!-- runs -->"]
    assert len(runnable) >= 4
    have = slurmc("cache", "ls", "--site", "devcluster", cwd=tmp_path)
    if "slurmc/demo:latest" not in have.stdout:  # the pages build on the demo's image
        demo = subprocess.run(["bash", str(REPO / "scripts" / "demo")], capture_output=True)
        assert demo.returncode == 0, demo.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env["PATH"] = "/usr/bin:/bin"
    for i, (page, code) in enumerate(runnable):
        work = tmp_path / f"block{i}"
        work.mkdir()
        script = f'set -eo pipefail\neval "$({shlex.quote(str(REPO))}/scripts/env)"\n{code}'
        r = subprocess.run(
            ["bash", "-c", script], cwd=work, capture_output=True, text=True, env=env, timeout=300
        )
        assert r.returncode == 0, f"{page.relative_to(REPO)}:\n{code}\n{r.stderr[-2000:]}"
        if "--wait" in code:
            assert "hello from a job" in r.stdout


# --------------------------------------------------------------- Determined table


def determined_rows() -> dict[str, str]:
    """{Determined column: slurmc command} from the migration table."""
    text = (DOCS / "guides" / "determined.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and "slurmc " in cells[1]:
            rows[cells[0]] = re.findall(r"`([^`]*)`", cells[1])[0]
    return rows


@pytest.fixture
def sif(tmp_path) -> Path:
    """A real SIF file: a SquashFS made by mksquashfs, packed by the SIF test double."""
    src = tmp_path / "rootfs"
    src.mkdir()
    (src / "hello").write_text("hello\n")
    sqfs = tmp_path / "img.sqfs"
    subprocess.run(["mksquashfs", str(src), str(sqfs), "-noappend", "-quiet"], check=True)
    sys.path.insert(0, str(REPO / "tests" / "doubles"))
    try:
        import sif as sif_double  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    out = tmp_path / "image.sif"
    sif_double.pack(str(sqfs), str(out))
    return out


CUDA = "determinedai/environments:cuda-11.3-pytorch-1.12-tf-2.11-gpu-2b7e2a1"


def test_every_determined_row_does_what_it_says(tmp_path, sif, doubles):
    """Apptainer/Enroot are the test doubles (they accept the real tools' grammar)."""
    rows = determined_rows()
    assert len(rows) == 12, rows
    root = tmp_path / "image_root"
    enroot_root = tmp_path / "enroot"
    env = {"SINGULARITY_IMAGE_ROOT": str(root), "SLURMC_ENROOT_CACHE": str(enroot_root)}
    sqsh = tmp_path / "img.sqfs"
    ref = "team/img:v1"

    def run(row: str, stdin: str | None = None, **subst: str) -> subprocess.CompletedProcess[str]:
        words = shlex.split(rows[row])
        assert words[0] == "slurmc" or "=" in words[0], rows[row]
        for k in env:
            words = [w.replace(f"{k}=DIR", "") for w in words]
        words = [w for w in words if w]
        words = [subst.get(w, w) for w in words]
        words = [w.replace("FILE", subst.get("FILE", "FILE")) for w in words]
        return slurmc(*words[1:], cwd=tmp_path, env=env, input=stdin)

    # -i FILE REF: the SIF is added, a non-image is refused
    row = "`manage-singularity-cache -i FILE REF`"
    r = run(row, FILE=str(sif), REF=ref)
    assert r.returncode == 0, r.stderr
    assert (root / "team" / "img:v1").read_bytes() == sif.read_bytes()
    junk = tmp_path / "junk.sif"
    junk.write_bytes(b"not a SIF image\n" * 256)
    r = run(row, FILE=str(junk), REF="team/junk:v1")
    assert r.returncode == 1 and "not an image" in r.stderr
    # REF: already cached, so no pull (there is no network to pull from)
    r = run("`manage-singularity-cache REF`", REF=ref)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(root / "team" / "img:v1")
    # --cuda: the site's default cuda image, once it is cached
    (root / "determinedai").mkdir()
    (root / "determinedai" / CUDA.split("/", 1)[1]).write_bytes(sif.read_bytes())
    r = run("`manage-singularity-cache --cuda`")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(root / CUDA)
    # -l: lists both
    r = run("`manage-singularity-cache -l`")
    assert r.returncode == 0 and ref in r.stdout and CUDA in r.stdout, r.stdout
    # manage-enroot-cache -s DIR, --nocreate: the .sqsh cache in DIR
    (enroot_root / "team").mkdir(parents=True)
    (enroot_root / "team" / "img:v1.sqsh").write_bytes(sqsh.read_bytes())
    r = run("`manage-enroot-cache -s DIR REF`", DIR=str(enroot_root), REF=ref)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(enroot_root / "team" / "img:v1.sqsh")
    before = len(double_calls(doubles, "enroot"))
    r = run("`manage-enroot-cache --nocreate REF`", REF=ref)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(enroot_root / "team" / "img:v1.sqsh")
    calls = double_calls(doubles, "enroot")[before:]
    assert not any("create" in c.get("argv", []) for c in calls), calls
    # --username: the password from stdin; cached already, so no registry is asked;
    # without a password there is nothing to log in with
    row = "`manage-singularity-cache --username USER`"
    r = run(row, stdin="secret\n", REF=ref, USER="someone")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(root / "team" / "img:v1")
    r = run(row, stdin="\n", REF=ref, USER="someone")
    assert r.returncode == 1 and "the password is empty" in r.stderr
    # singularity_image_root: the determined site's cache root
    r = run("`singularity_image_root` (master config)", REF=ref)
    assert r.returncode == 0, r.stderr
    assert str(root / "team" / "img:v1") in r.stdout
    # task_container_defaults.image: the site's [images.defaults]
    r = run("`task_container_defaults.image` (cpu/cuda/rocm)")
    assert r.returncode == 0 and CUDA in r.stdout, r.stdout
    # bind_mounts / environment_variables: --bind / --env
    r = run("`task_container_defaults.bind_mounts`, `environment_variables`", REF=ref)
    assert r.returncode == 0, r.stderr
    assert "/data" in r.stdout and "OMP_NUM_THREADS" in r.stdout
    # environment.image path forms
    tar = tmp_path / "image.tar"
    tar.write_bytes(b"")
    r = run("`environment.image: oci-archive:/path/image.tar`", FILE=str(tar))
    assert r.returncode == 0, r.stderr
    assert f"oci-archive:{tar}" in r.stdout
    r = run("`environment.image: /path/image.sif`", FILE=str(sif))
    assert r.returncode == 0, r.stderr
    assert str(sif) in r.stdout and str(root) not in r.stdout


def _readme_block_after(marker: str) -> str:
    lines = (REPO / "README.md").read_text().split(marker, 1)[1].splitlines()[1:]
    block: list[str] = []
    for line in lines:
        if line.startswith("    "):
            block.append(line[4:])
        elif block and line.strip():
            break
    return "\n".join(block).strip()


def test_guides_show_the_examples_test_readme_runs():
    """The LUMI and Pyxis examples and their renderings are the README's, which
    tests/integration/test_readme.py renders with --dry-run and compares."""
    lumi = [code.strip() for p, _, code in blocks() if p.name == "lumi.md"]
    assert lumi[0] == _readme_block_after("### LUMI")
    assert lumi[1] == _readme_block_after("renders (`--dry-run` shows it):")
    nvidia = [code.strip() for p, _, code in blocks() if p.name == "nvidia.md"]
    assert nvidia[0] == _readme_block_after("### An NVIDIA cluster with Enroot and Pyxis")
    assert nvidia[1] == _readme_block_after("`/shared/enroot`) and renders")


def test_every_template_variable_is_documented():
    page = (DOCS / "reference" / "sites.md").read_text().split("## Template variables", 1)[1]
    used: set[str] = set()
    for t in (REPO / "templates").rglob("*.j2"):
        used |= set(re.findall(r"\bjob\.\w+(?:\.\w+)?", t.read_text()))
    assert "job.directives" in used
    for name in sorted(used):
        assert f"`{name}`" in page, name
