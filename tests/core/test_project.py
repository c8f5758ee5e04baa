"""A project's slurmc.toml / [tool.slurmc], and the site's default images (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from slurmc.cli.app import app
from slurmc.core import project
from slurmc.errors import ConfigError
from slurmc.paths import bundled_dir


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env) -> Path:
    for k, v in clean_env.items():
        monkeypatch.setenv(k, v)
    for k in ("SLURMC_SITE", "SLURMC_PROJECT_FILE", "PROJECT_ID"):
        monkeypatch.delenv(k, raising=False)
    Path(clean_env["SLURM_CONF"]).touch()
    d = tmp_path / "proj" / "src" / "deep"
    d.mkdir(parents=True)
    monkeypatch.chdir(d)
    (tmp_path / "proj" / "img.sif").write_bytes(b"")
    (tmp_path / "proj" / "other.sif").write_bytes(b"")
    return tmp_path / "proj"


def dry(*args: str):
    return CliRunner().invoke(app, ["run", "--dry-run", *args])


BASIC = """
site = "lumi"
account = "project_465000123"
image = "{root}/img.sif"
partition = "small-g"
gpus-per-node = 2
time = "30:00"
bind = ["/scratch/x"]
env = {{ HF_HOME = "/scratch/hf", B = "b" }}
"""


def test_nearest_slurmc_toml_supplies_the_defaults(work):
    (work / "slurmc.toml").write_text(BASIC.format(root=work))
    r = dry("--", "python", "train.py", "-t", "10")
    assert r.exit_code == 0, r.output
    for line in (
        "#SBATCH --partition=small-g",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --time=30:00",
        "#SBATCH --account=project_465000123",
    ):
        assert line in r.stdout
    assert (
        f"{work}/img.sif" in r.stdout
        and "/scratch/x" in r.stdout
        and "HF_HOME=/scratch/hf" in r.stdout
    )
    assert (
        f"# Note: from {work}/slurmc.toml: site, image, partition, account, gpus-per-node, "
        "time, bind, env" in r.stdout
    )
    assert r.stdout.rstrip().endswith(" python train.py -t 10")


def test_the_command_line_wins(work):
    (work / "slurmc.toml").write_text(BASIC.format(root=work))
    r = dry(
        "-p", "dev-g", "-t", "5:00", "--env", "B=cli", "-B", "/flash/y", f"{work}/other.sif", "true"
    )
    assert r.exit_code == 0, r.output
    assert "#SBATCH --partition=dev-g" in r.stdout and "#SBATCH --time=5:00" in r.stdout
    assert "#SBATCH --gpus-per-node=2" in r.stdout  # not given: still the file's
    assert f"{work}/other.sif" in r.stdout and f"{work}/img.sif" not in r.stdout
    assert "/flash/y" in r.stdout and "/scratch/x" not in r.stdout  # a list given replaces
    assert "B=cli" in r.stdout and "HF_HOME=/scratch/hf" in r.stdout  # env merges by name
    assert "B=b" not in r.stdout
    note = next(line for line in r.stdout.splitlines() if "# Note: from" in line)
    assert "partition" not in note and "image" not in note and "gpus-per-node" in note


def test_pyproject_tool_table_and_nearest_wins(work, tmp_path):
    (tmp_path / "slurmc.toml").write_text('partition = "standard"\n')  # farther away
    (work / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.slurmc]\nsite = "lumi"\naccount = "p"\npartition = "small"\n'
    )
    r = dry(f"{work}/img.sif", "true")
    assert r.exit_code == 0, r.output
    assert "#SBATCH --partition=small" in r.stdout
    assert f"from {work}/pyproject.toml: site, partition, account" in r.stdout


def test_a_pyproject_without_the_table_does_not_stop_the_search(work, tmp_path):
    (work / "src" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (work / "slurmc.toml").write_text('site = "lumi"\naccount = "p"\n')
    assert project.find(str(work / "src" / "deep")) == work / "slurmc.toml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tiem = "1"\n', "unknown key 'tiem'"),
        ('time = "1:2:3:4"\n', "key 'time'"),
        ("gpus-per-node = true\n", "key 'gpus-per-node'"),
        ('bind = "/x"\n', "key 'bind'"),
        ("env = { A = 1 }\n", "key 'env'"),
        ('conda = "yes"\n', "key 'conda'"),
        ('partition = "a\\nb"\n', "key 'partition'"),
        ("[[x\n", "not valid TOML"),
        ('site = "lumi"\nsite = "x"\n', "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_key(work, text, message):
    (work / "slurmc.toml").write_text(text)
    r = dry(f"{work}/img.sif", "true")
    assert r.exit_code != 0
    (line,) = r.output.strip().splitlines()
    assert line.startswith(f"slurmc: error: {work}/slurmc.toml") and message in line


def test_non_utf8_file_is_one_line(work):
    (work / "slurmc.toml").write_bytes(b'site = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        project.load(work / "slurmc.toml")


def test_project_file_none_ignores_it(work, monkeypatch):
    (work / "slurmc.toml").write_text('tiem = "1"\n')
    monkeypatch.setenv("SLURMC_PROJECT_FILE", "none")
    r = dry("--site", "lumi", "-A", "p", f"{work}/img.sif", "true")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(("partition", "kind"), [("small", "cpu"), ("small-g", "rocm")])
def test_site_default_image_by_the_partitions_gpus(work, partition, kind):
    """No IMAGE anywhere: the site's [images.defaults] for the partition's GPU vendor."""
    site = work / "site.toml"
    lumi = bundled_dir("site-configs") / "lumi.toml"
    text = lumi.read_text()
    text = text.replace(
        "[images]\n",
        f'[images.defaults]\ncpu = "{work}/cpu.sif"\nrocm = "{work}/rocm.sif"\n\n[images]\n',
        1,
    )
    site.write_text(text)
    (work / "cpu.sif").write_bytes(b"")
    (work / "rocm.sif").write_bytes(b"")
    r = dry("--site", str(site), "-A", "p", "-p", partition, "--", "python", "x.py")
    assert r.exit_code == 0, r.output
    assert f"{work}/{kind}.sif" in r.stdout
    assert f"no IMAGE given: the site's default {kind} image for {partition}" in r.output


def test_no_image_anywhere_says_what_to_do(work):
    r = dry("--site", "lumi", "-A", "p", "--", "python", "x.py")
    assert r.exit_code != 0
    assert "no IMAGE given" in r.output and "slurmc.toml" in r.output


def test_shell_reads_the_same_file(work, fp):
    (work / "slurmc.toml").write_text(BASIC.format(root=work))
    fp.register(["salloc", fp.any()], returncode=0)
    r = CliRunner().invoke(app, ["shell"])
    assert r.exit_code == 0, r.output
    (call,) = [c for c in fp.calls if c[0] == "salloc"]
    assert "--partition=small-g" in call and "--gpus-per-node=2" in call
    assert f"note: from {work}/slurmc.toml" in r.output
