from __future__ import annotations

from pathlib import Path

import pytest

from slurmc.errors import ConfigError
from slurmc.sites import expand, load_site, load_site_file, resolve_site, site_files

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (REPO / "site-configs").glob("*.toml"))


def test_ships_the_required_sites():
    assert {"lumi", "determined", "nvidia-pyxis", "podman", "devcluster"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_site_loads(name, clean_env):
    site = load_site(name, clean_env)
    assert site.name == name


def test_lumi_matches_the_field_notes(clean_env):
    lumi = load_site("lumi", clean_env)
    assert lumi.runtime == "singularity" and lumi.conda == "with_conda"
    assert set(lumi.partitions) == {"small", "standard", "small-g", "standard-g", "dev-g"}
    for p in ("small-g", "standard-g", "dev-g"):
        part = lumi.partitions[p]
        assert (part.gpu_vendor, part.gpus_per_node, part.cores_per_node) == ("amd", 8, 56)
    assert lumi.binds[:2] == ("/var/spool/slurmd", "/opt/cray") and "/appl" in lumi.binds
    assert lumi.catalogs == ("/appl/local/containers/sif-images",)
    assert lumi.account_env == "PROJECT_ID" and lumi.account_required


def test_determined_has_the_seed_default_images(clean_env):
    d = load_site("determined", clean_env)
    assert d.default_images["rocm"] == (
        "determinedai/environments:rocm-5.0-pytorch-1.10-tf-2.7-rocm-2b7e2a1"
    )
    assert set(d.default_images) == {"cpu", "cuda", "rocm"}


def write(tmp_path: Path, text: str, name: str = "mysite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('[runtime]\nkind = "docker"\n', "runtime.kind", "one of apptainer"),
        ("[runtime]\nkind = 3\n", "runtime.kind", "one of"),
        (
            '[runtime]\nkind = "podman"\n[partitions.g]\ngpu_vendor = "intel"\n',
            "partitions.g.gpu_vendor",
            "one of amd, nvidia, none",
        ),
        (
            '[runtime]\nkind = "podman"\n[partitions.g]\ngpus_per_node = "8"\n',
            "partitions.g.gpus_per_node",
            "a whole number",
        ),
        ('[runtime]\nkind = "podman"\n[container]\nbinds = "/a"\n', "container.binds", "a list"),
        (
            '[runtime]\nkind = "podman"\n[container]\nbindz = ["/a"]\n',
            "container.bindz",
            "unknown key",
        ),
        ('[runtime]\nkind = "podman"\n[slurm.defaults]\ntime = "soon"\n', "slurm.defaults", "time"),
        (
            '[runtime]\nkind = "podman"\n[slurm]\ndefault_partition = "x"\n[partitions.y]\n',
            "slurm.default_partition",
            "one of the [partitions]",
        ),
        ("[container]\n", "runtime.kind", "missing"),
        ('[runtime]\nkind = "singularity"\ngpu_flag = "no"\n', "runtime.gpu_flag", "true or false"),
        (
            '[runtime]\nkind = "apptainer"\n[partitions.g]\ngpu_flag = 0\n',
            "partitions.g.gpu_flag",
            "true or false",
        ),
    ],
)
def test_invalid_site_files_name_file_key_value_and_expectation(tmp_path, body, key, expected):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as exc:
        load_site_file(path)
    msg = str(exc.value)
    assert str(path) in msg and key in msg and expected in msg
    assert "\n" not in msg


def test_bad_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_site_file(write(tmp_path, "[runtime\n"))


def test_lookup_order_flag_env_userconfig_detect(tmp_path, clean_env):
    sites = Path(clean_env["XDG_CONFIG_HOME"]) / "slurmc" / "sites"
    sites.mkdir(parents=True)
    (sites / "mine.toml").write_text('[runtime]\nkind = "podman"\n')
    cfg = Path(clean_env["XDG_CONFIG_HOME"]) / "slurmc" / "config.toml"
    # auto-detection: the devcluster's ClusterName
    conf = tmp_path / "slurm.conf"
    conf.write_text("SlurmctldHost=localhost\nClusterName=devcluster\n")
    env = {**clean_env, "SLURM_CONF": str(conf)}
    assert resolve_site(None, env).name == "devcluster"
    cfg.write_text('site = "mine"\n')
    assert resolve_site(None, env).name == "mine"
    assert resolve_site(None, {**env, "SLURMC_SITE": "lumi"}).name == "lumi"
    assert resolve_site("determined", {**env, "SLURMC_SITE": "lumi"}).name == "determined"


def test_no_site_is_a_clear_error(clean_env):
    with pytest.raises(ConfigError, match="pass --site NAME or set SLURMC_SITE"):
        resolve_site(None, clean_env)


def test_user_site_overrides_bundled_one(clean_env):
    sites = Path(clean_env["XDG_CONFIG_HOME"]) / "slurmc" / "sites"
    sites.mkdir(parents=True)
    (sites / "lumi.toml").write_text('description = "my lumi"\n[runtime]\nkind = "apptainer"\n')
    assert load_site("lumi", clean_env).description == "my lumi"
    assert site_files(clean_env)["lumi"].parent == sites


def test_unknown_site_lists_the_known_ones(clean_env):
    with pytest.raises(ConfigError, match=r"known sites: .*lumi"):
        load_site("nope", clean_env)


def test_expand():
    env = {"PROJECT_ID": "project_1", "HOME": "/home/u"}
    assert expand("/scratch/${PROJECT_ID}/c", env, "x") == "/scratch/project_1/c"
    assert expand("${NOPE:-/d}/c", env, "x") == "/d/c"
    assert expand("~/c", env, "x") == "/home/u/c"
    with pytest.raises(ConfigError, match=r"needs \$NOPE"):
        expand("$NOPE/c", env, "x")
