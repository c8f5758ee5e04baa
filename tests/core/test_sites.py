from __future__ import annotations

from pathlib import Path

import pytest

from slurmc.core.sites import expand, load_site, load_site_file, resolve_site, site_files
from slurmc.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
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


# ---- the site grammar, field by field ------------------------------------------------------

MINIMAL = '[runtime]\nkind = "apptainer"\n'


def site_from(tmp_path: Path, text: str, name: str = "mysite.toml"):
    return load_site_file(write(tmp_path, MINIMAL + text, name))


@pytest.mark.parametrize("name", ["a", "A9", "9a", "a_b", "a.b-c", "aB", "a9", "x" * 64])
def test_site_names(tmp_path, name):
    assert site_from(tmp_path, "", f"{name}.toml").name == name


@pytest.mark.parametrize("name", ["_a", "-a", ".a", "a b", "a/b", "ü"])
def test_bad_site_names(tmp_path, name):
    with pytest.raises(ConfigError, match=r"key 'name'.*letters, digits"):
        load_site_file(write(tmp_path, f'name = "{name}"\n' + MINIMAL))


@pytest.mark.parametrize("var", ["WITH_CONDA", "_x", "a9", "A_B_1", "X", "_", "z"])
def test_conda_variable_names(tmp_path, var):
    site = site_from(tmp_path, f'[container]\nconda_variable = "{var}"\nenv = {{ {var} = "1" }}\n')
    assert site.conda_variable == var and site.env == {var: "1"}


@pytest.mark.parametrize("var", ["9a", "a-b", "", "a b", "$X"])
def test_bad_conda_variable_and_env_names(tmp_path, var):
    with pytest.raises(ConfigError, match=r"conda_variable.*an environment variable name"):
        site_from(tmp_path, f'[container]\nconda_variable = "{var}"\n')
    with pytest.raises(ConfigError, match=r"'container.env'.*environment variable names"):
        site_from(tmp_path, f'[container]\nenv = {{ "{var}" = "1" }}\n')


def test_partition_numbers(tmp_path):
    site = site_from(
        tmp_path,
        '[partitions.p]\ngpus_per_node = 0\ncores_per_node = 1\ncpu_bind_masks = ["0xfE", "0x1"]\n',
    )
    p = site.partitions["p"]
    assert (p.gpus_per_node, p.cores_per_node, p.cpu_bind_masks) == (0, 1, ("0xfE", "0x1"))
    assert site_from(tmp_path, "[partitions.q]\n").partitions["q"].gpus_per_node == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("gpus_per_node = -1", "gpus_per_node.*a number >= 0"),
        ("cores_per_node = 0", "cores_per_node.*a number >= 1"),
        ('cpu_bind_masks = ["0x"]', "cpu_bind_masks.*hexadecimal"),
        ('cpu_bind_masks = ["fe"]', "cpu_bind_masks.*hexadecimal"),
        ('cpu_bind_masks = ["0xfg"]', "cpu_bind_masks.*hexadecimal"),
    ],
)
def test_bad_partition_numbers(tmp_path, body, reason):
    with pytest.raises(ConfigError, match=reason):
        site_from(tmp_path, f"[partitions.p]\n{body}\n")


def test_partition_lookup_falls_back_to_the_default_and_the_site_vendor(tmp_path):
    site = site_from(
        tmp_path,
        '[slurm]\ndefault_partition = "g"\ngpu_vendor = "amd"\n'
        '[partitions.g]\ngpu_vendor = "nvidia"\ngpus_per_node = 4\n',
    )
    assert site.partition(None).gpus_per_node == 4
    assert site.partition("g").gpu_vendor == "nvidia"
    other = site.partition("other")
    assert (other.name, other.gpu_vendor, other.gpus_per_node) == ("other", "amd", 0)
    bare = site_from(tmp_path, "", "bare.toml")
    assert bare.partition(None).name == ""


def test_user_config_site_must_be_a_name(clean_env):
    cfg = Path(clean_env["XDG_CONFIG_HOME"]) / "slurmc"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text("site = 3\n")
    with pytest.raises(ConfigError, match="key 'site': got 3, expected a site name"):
        resolve_site(None, clean_env)
    (cfg / "config.toml").write_text('site = "lumi"\n')
    assert resolve_site(None, clean_env).name == "lumi"


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("ClusterName=lumi\n", "lumi"),
        ("  clustername = lumi2 # x\n", "lumi2"),
        ("ClusterName =x\n", "x"),
    ],
)
def test_cluster_name_from_slurm_conf(tmp_path, clean_env, line, name):
    conf = tmp_path / "slurm.conf"
    conf.write_text("# ClusterName=wrong\nSlurmUser=root\n" + line)
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "mine.toml").write_text(MINIMAL + f'[detect]\ncluster_name = "{name}"\n')
    env = dict(clean_env, SLURM_CONF=str(conf), SLURMC_SITE_PATH=str(sites))
    assert resolve_site(None, env).name == "mine"
    conf.write_text("ClusterName=\n")
    with pytest.raises(ConfigError, match="none detected"):
        resolve_site(None, env)


def test_load_site_by_path_or_name(tmp_path, clean_env):
    path = write(tmp_path, MINIMAL, "x.toml")
    assert load_site(str(path), clean_env).name == "x"
    with pytest.raises(ConfigError, match="no such site file"):
        load_site("missing.toml", clean_env)
    with pytest.raises(ConfigError, match=r"unknown site 'x'; known sites: determined, "):
        load_site("x", clean_env)


@pytest.mark.parametrize(
    ("value", "out"),
    [
        ("$A/x", "1/x"),
        ("${A}/x", "1/x"),
        ("${A_9}", "9"),
        ("${B:-d}/x", "d/x"),
        ("${B:-}/x", "/x"),
        ("${E:-d}", "d"),  # set but empty: the default
        ("$a9_", "lower"),
        ("${Ab}/$Ab", "mixed/mixed"),
        ("${ab}", "low"),
        ("x$", "x$"),
        ("$9", "$9"),
    ],
)
def test_expand_forms(value, out):
    env = {"A": "1", "A_9": "9", "E": "", "a9_": "lower", "Ab": "mixed", "ab": "low"}
    assert expand(value, env, "images.cache") == out


def test_expand_names_the_missing_variable():
    with pytest.raises(ConfigError, match=r"^images.cache: '\$B/x' needs \$B, which is not set"):
        expand("$B/x", {}, "images.cache")
    with pytest.raises(ConfigError, match=r"needs \$E"):
        expand("${E}", {"E": ""}, "w")


def test_an_empty_cluster_name_line_does_not_hide_a_later_one(tmp_path, clean_env):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=\nClusterName=mine\n")
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "mine.toml").write_text(MINIMAL + '[detect]\ncluster_name = "mine"\n')
    env = dict(clean_env, SLURM_CONF=str(conf), SLURMC_SITE_PATH=str(sites))
    assert resolve_site(None, env).name == "mine"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[container]\nenv = { A = 1 }", r"key 'container.env': got \{'A': 1\}, expected a table"),
        (
            '[images]\ndefaults = { gpu = "x" }',
            "'images.defaults': got 'gpu', expected keys cpu",
        ),
        ('[images]\ncache = ["a", ""]', "key 'images.cache'.*a list of directories"),
        ('[images]\npull = "maybe"', "key 'images.pull': got 'maybe', expected one of login, job"),
        ("[slurm]\naccount_required = 1", "key 'slurm.account_required': got 1, expected true"),
        ("[partitions.p]\ngpus_per_node = true", "gpus_per_node': got True, expected a whole"),
        ("[slurm]\nnope = 1", "unknown key 'slurm.nope'"),
        ("[slurm]\ndefaults = { nodes = true }", "defaults.nodes': got True, expected a str"),
        ("[slurm]\ndefaults = { nodes = 1.5 }", "'slurm.defaults.nodes': got 1.5, expected a str"),
    ],
)
def test_bad_site_values_name_the_key(tmp_path, body, reason):
    with pytest.raises(ConfigError, match=reason):
        site_from(tmp_path, body + "\n")


def test_a_user_config_that_is_not_toml_is_named(clean_env):
    cfg = Path(clean_env["XDG_CONFIG_HOME"]) / "slurmc"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text("site = [\n")
    with pytest.raises(ConfigError, match=r"config.toml: cannot read user config: "):
        resolve_site(None, clean_env)
