from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from slurmc.core.job import expand_output
from slurmc.core.plan import JobRequest
from slurmc.core.sites import load_site
from slurmc.errors import ImageNotFoundError, ValidationError
from slurmc.grammar.quoting import has_control
from slurmc.usecases.submit import plan_job as plan


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "img.sif"
    path.write_bytes(b"x")
    return path


def request(image: Path, **resources: str | None) -> JobRequest:
    return JobRequest(image=str(image), command=("python", "train.py"), resources=resources)


def test_account_comes_from_the_project_variable(image, clean_env):
    lumi = load_site("lumi", clean_env)
    job = plan(request(image), lumi, {**clean_env, "PROJECT_ID": "project_465000001"}, "/tmp")
    assert job.resources.account == "project_465000001"
    with pytest.raises(ValidationError, match=r"pass --account or set \$PROJECT_ID"):
        plan(request(image), lumi, clean_env, "/tmp")


def test_partition_sets_gpu_vendor_and_defaults(image, clean_env):
    lumi = load_site("lumi", clean_env)
    job = plan(request(image, partition="small-g", account="p"), lumi, clean_env, "/tmp")
    assert job.gpu_vendor == "amd" and job.resources.time == "00:15:00"
    assert plan(request(image, account="p"), lumi, clean_env, "/tmp").gpu_vendor == "none"
    job = plan(request(image, account="p", time="2:00:00"), lumi, clean_env, "/tmp")
    assert job.resources.time == "2:00:00"  # the user's value wins over the site default


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("time", "30 minutes", "--time"),
        ("mem", "lots", "--mem"),
        ("nodes", "two", "--nodes"),
        ("cpus_per_task", "0", "--cpus-per-task"),
        ("gpus_per_node", "2;rm", "--gpus-per-node"),
        ("job_name", "a\n#SBATCH -p evil", "control character"),
        ("comment", "c\r", "control character"),
        ("output", "x\x00", "control character"),
        ("partition", "small g", "--partition"),
        ("dependency", "afterok:1\n", "control character"),
    ],
)
def test_invalid_options_are_refused_with_the_field_named(image, clean_env, field, value, message):
    site = load_site("devcluster", clean_env)
    with pytest.raises(ValidationError, match=message):
        plan(request(image, **{field: value}), site, clean_env, "/tmp")


def test_hostile_values_in_free_text_fields(image, clean_env, hostile):
    site = load_site("devcluster", clean_env)
    req = request(image, job_name=hostile or None, comment=hostile or None)
    if has_control(hostile):
        with pytest.raises(ValidationError, match="control character"):
            plan(req, site, clean_env, "/tmp")
    else:
        job = plan(req, site, clean_env, "/tmp")
        assert all("\n" not in d for d in job.directives)


def test_no_command_and_missing_image(image, clean_env, tmp_path):
    site = load_site("devcluster", clean_env)
    with pytest.raises(ValidationError, match="no command given"):
        plan(JobRequest(image=str(image), command=()), site, clean_env, "/tmp")
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        plan(JobRequest(image=str(tmp_path / "nope.sif"), command=("x",)), site, clean_env, "/")


def test_reference_resolves_in_the_cache(tmp_path, clean_env):
    site = load_site("determined", clean_env)
    root = tmp_path / "root"
    ref = "determinedai/environments:rocm-5.0-pytorch-1.10-tf-2.7-rocm-2b7e2a1"
    req = JobRequest(image=ref, command=("x",), cache_dirs=(str(root),))
    missing = plan(req, site, clean_env, "/").image
    assert missing.source == "missing" and missing.path == str(root / ref)  # to be pulled
    (root / "determinedai").mkdir(parents=True)
    (root / "determinedai" / ref.split("/")[1]).write_bytes(b"sif")
    job = plan(req, site, clean_env, "/")
    assert job.image.source == "cache" and job.image.path == str(root / ref)
    # the site's own root, through its environment variable
    job = plan(
        JobRequest(image=ref, command=("x",)),
        site,
        {**clean_env, "SINGULARITY_IMAGE_ROOT": str(root)},
        "/",
    )
    assert job.image.path == str(root / ref)


@pytest.mark.parametrize("bind", ["/a,/b", "/a:rel", "", "/a:/b:ro:x", "a\nb", "/a::/b"])
def test_bad_binds(image, clean_env, bind):
    site = load_site("lumi", clean_env)
    req = JobRequest(image=str(image), command=("x",), binds=(bind,), resources={"account": "p"})
    with pytest.raises(ValidationError, match="--bind"):
        plan(req, site, clean_env, "/tmp")


def test_relative_bind_becomes_absolute(image, clean_env):
    site = load_site("lumi", clean_env)
    req = JobRequest(
        image=str(image), command=("x",), binds=("data:/data:ro",), resources={"account": "p"}
    )
    assert plan(req, site, clean_env, "/work/me").binds[-1] == "/work/me/data:/data:ro"


def test_interactive_refuses_batch_only_options(image, clean_env):
    site = load_site("devcluster", clean_env)
    req = JobRequest(image=str(image), command=("x",), resources={"output": "o"}, interactive=True)
    with pytest.raises(ValidationError, match="--output does not apply"):
        plan(req, site, clean_env, "/tmp")


def test_expand_output():
    assert expand_output("%x-%j.out", "42", "slurmc-python", "me") == "slurmc-python-42.out"
    assert expand_output("%u/%%j", "1", "n", "me") == "me/%j"


NOT_UTF8 = os.fsdecode(b"caf\xe9.txt")


@pytest.mark.parametrize("site_name", ["lumi", "determined"])
def test_words_that_are_not_utf8_are_refused_on_apptainer_sites(image, clean_env, site_name):
    site = load_site(site_name, clean_env)
    res = {"account": "p"}
    cases = [
        (JobRequest(image=str(image), command=("cat", NOT_UTF8), resources=res), "command word"),
        (JobRequest(image=str(image), command=("x",), env=(f"V={NOT_UTF8}",), resources=res), "V"),
        (
            JobRequest(image=str(image), command=("x",), binds=(f"/d/{NOT_UTF8}",), resources=res),
            "--bind",
        ),
    ]
    for req, what in cases:
        with pytest.raises(ValidationError, match="not UTF-8") as exc:
            plan(req, site, clean_env, "/tmp")
        assert what in str(exc.value) and "\\xe9" in str(exc.value)


def test_words_that_are_not_utf8_pass_where_the_runtime_carries_them(image, clean_env):
    site = load_site("devcluster", clean_env)
    req = JobRequest(image=str(image), command=("cat", NOT_UTF8), env=(f"V={NOT_UTF8}",))
    assert plan(req, site, clean_env, "/tmp").command == ("cat", NOT_UTF8)


ECHO_BYTES = "import os, sys; print([os.fsencode(a).hex() for a in sys.argv[1:]])"


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_podman_escapes_words_that_are_not_utf8_and_the_container_decodes_them(
    tmp_path, clean_env, shell
):
    """podman's OCI config is JSON (Go makes U+FFFD of other bytes): such a command goes
    in as printf %b escapes, decoded by a POSIX loop (run here by a local *shell*)."""
    image = tmp_path / "img.oci.tar"
    image.write_bytes(b"x")
    site = load_site("podman", clean_env)
    words = [NOT_UTF8, ":", "a\\0101%b\\c", "x\n\n", "", "\udcff\udcc3\udca9 é"]
    req = JobRequest(image=str(image), command=("python3", "-c", ECHO_BYTES, *words))
    entry = plan(req, site, clean_env, str(tmp_path)).entry
    assert entry.startswith("sh -c ") and " : " not in entry  # srun's separator: never bare
    entry.encode("utf-8")  # nothing that podman would change
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    r = subprocess.run(
        ["bash", "-c", entry.replace("sh -c ", f"{shell} -c ", 1)],  # the script is bash
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.stdout == repr([os.fsencode(w).hex() for w in words]) + "\n", r.stderr
    # a command of UTF-8 only is rendered as before
    req = JobRequest(image=str(image), command=("python3", "-c", ECHO_BYTES, "é", ":"))
    assert "printf" not in plan(req, site, clean_env, str(tmp_path)).entry


def test_podman_refuses_env_values_and_binds_that_are_not_utf8(tmp_path, clean_env):
    image = tmp_path / "img.oci.tar"
    image.write_bytes(b"x")
    site = load_site("podman", clean_env)
    for req in (
        JobRequest(image=str(image), command=("x",), env=(f"V={NOT_UTF8}",)),
        JobRequest(image=str(image), command=("x",), binds=(f"/d/{NOT_UTF8}",)),
    ):
        with pytest.raises(ValidationError, match=r"not UTF-8.*podman would change"):
            plan(req, site, clean_env, str(tmp_path))


def test_env_values_reach_the_command_exactly_through_the_inner_wrapper(image, clean_env):
    """The entry run by a local bash (standing in for the container): values arrive exactly."""
    values = {"A": 'say "hi"', "B": "x,y=z", "C": "$HOME `id`", "D": "end\\", "E": "l1\nl2\n"}
    site = load_site("lumi", clean_env)
    req = JobRequest(
        image=str(image),
        command=(
            "python3",
            "-c",
            "import os,sys; print(repr([os.environ[k] for k in sys.argv[1:]]))",
            *values,
        ),
        env=tuple(f"{k}={v}" for k, v in values.items()),
        conda="none",
        resources={"account": "p"},
    )
    entry = plan(req, site, clean_env, "/tmp").entry
    assert entry.startswith('bash -c \'export "${@:1:5}" && shift 5 && exec "$@"\' slurmc ')
    r = subprocess.run(
        ["bash", "-c", entry], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert r.stdout == repr(list(values.values())) + "\n", r.stderr


@pytest.mark.parametrize(
    ("site_flag", "partition_flag", "flags"),
    [
        (None, None, ["--rocm"]),
        ("false", None, []),
        ("false", "true", ["--rocm"]),
        (None, "false", []),
    ],
)
def test_gpu_flag_switch_per_site_and_partition(
    image, clean_env, tmp_path, site_flag, partition_flag, flags
):
    text = '[runtime]\nkind = "singularity"\n'
    if site_flag:
        text += f"gpu_flag = {site_flag}\n"
    text += '[partitions.g]\ngpu_vendor = "amd"\n'
    if partition_flag:
        text += f"gpu_flag = {partition_flag}\n"
    (tmp_path / "s.toml").write_text(text)
    site = load_site(str(tmp_path / "s.toml"), clean_env)
    req = JobRequest(image=str(image), command=("x",), resources={"partition": "g"})
    assert [str(f) for f in plan(req, site, clean_env, "/tmp").gpu_flags] == flags


# ---- paths Pyxis's --container-mounts cannot carry (issue 13) ------------------------


def _img(tmp_path: Path, name: str) -> str:
    (tmp_path / name).write_bytes(b"")
    return str(tmp_path / name)


@pytest.mark.parametrize("char", list("$`\"',:;&|<>()*?[]{}~#!"))
def test_pyxis_refuses_a_working_directory_it_cannot_carry(char, tmp_path, clean_env):
    from slurmc.core.sites import load_site

    site = load_site("nvidia-pyxis", clean_env)
    cwd = f"/home/u/dir{char}x"
    req = JobRequest(image=_img(tmp_path, "img.sqsh"), command=("true",))
    with pytest.raises(ValidationError, match="working directory") as exc:
        plan(req, site, clean_env, cwd)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("bind", ["/data/a$b:/data", "/data:/da`ta`", '/x"y:/z', "/we'ird"])
def test_pyxis_refuses_binds_it_cannot_carry(bind, tmp_path, clean_env):
    from slurmc.core.sites import load_site

    site = load_site("nvidia-pyxis", clean_env)
    req = JobRequest(image=_img(tmp_path, "img.sqsh"), command=("true",), binds=(bind,))
    with pytest.raises(ValidationError, match="--bind"):
        plan(req, site, clean_env, "/home/u/plain dir")


def test_pyxis_takes_spaces_and_plain_paths(tmp_path, clean_env):
    from slurmc.core.sites import load_site

    site = load_site("nvidia-pyxis", clean_env)
    req = JobRequest(
        image=_img(tmp_path, "img.sqsh"), command=("true",), binds=("/data/my files:/data",)
    )
    job = plan(req, site, clean_env, "/home/u/plain dir/ünï_-+.@%=")
    assert job.binds == ("/data/my files:/data",)


def test_other_runtimes_carry_such_directories(tmp_path, clean_env):
    from slurmc.core.sites import load_site

    site = load_site("devcluster", clean_env)
    req = JobRequest(image=_img(tmp_path, "img.sqfs"), command=("true",))
    plan(req, site, clean_env, "/home/u/dir$x")  # ch-run gets -c "$PWD": not re-read by a shell


def test_podman_bind_without_destination_is_a_bind_not_a_volume(tmp_path, clean_env):
    """podman -v SRC alone is an anonymous (empty) volume at SRC: slurmc writes SRC:SRC."""
    from slurmc.core.render import render_batch
    from slurmc.runtimes import get_runtime

    image = tmp_path / "img.oci.tar"
    image.write_bytes(b"x")
    req = JobRequest(image=str(image), command=("x",), binds=("/data", "/in:/dst:ro"))
    script = render_batch(plan(req, load_site("podman", clean_env), clean_env, str(tmp_path)))
    assert "-v /data:/data \\" in script and "-v /in:/dst:ro \\" in script
    argv = get_runtime("podman").exec_argv("podman", "/i.tar", ["x"], ["/data", "/a:/b"])
    assert argv[argv.index("-v") : argv.index("-v") + 4] == ["-v", "/data:/data", "-v", "/a:/b"]


def test_podman_refuses_a_working_directory_with_a_colon(tmp_path, clean_env):
    """-v "$PWD:$PWD" splits at ':' (podman's -v SRC:DST[:OPTIONS]); '$' and the rest pass."""
    site = load_site("podman", clean_env)
    req = JobRequest(image=_img(tmp_path, "img.oci.tar"), command=("true",))
    with pytest.raises(ValidationError, match=r"working directory.*podman's -v SRC:DST"):
        plan(req, site, clean_env, "/home/u/a:b")
    plan(req, site, clean_env, '/home/u/dir$x `y` "z"')
