"""slurmc.usecases.venvs: names, the store, build commands per runtime, publishing, mounts, cotainr.

External commands (the container runtime, mksquashfs, unsquashfs, cotainr) are
stood in for by pytest-subprocess; the real ones run in tests/integration/test_venvs.py.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

from slurmc.errors import (
    ExternalCommandError,
    ImageNotFoundError,
    ToolMissingError,
    ValidationError,
)
from slurmc.usecases import build, venv_build, venvs

WITH_CONDA = "source /opt/miniconda3/bin/activate pytorch"


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private venv store, no site, no runtime on PATH but the ones a test adds."""
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "USER": "alice",
    }


@pytest.fixture
def store(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "slurmc" / "venvs"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where build trees go (tempfile's directory), to check nothing is left there."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
def conda_image(tmp_path: Path) -> Path:
    """A directory image that defines WITH_CONDA the Charliecloud way (/ch/environment)."""
    root = tmp_path / "img-conda"
    (root / "ch").mkdir(parents=True)
    (root / "ch" / "environment").write_text(f"WITH_CONDA={WITH_CONDA}\n")
    (root / "user-software").mkdir()
    return root


@pytest.fixture
def plain_image(tmp_path: Path) -> Path:
    root = tmp_path / "img-plain"
    (root / "user-software").mkdir(parents=True)
    return root


@pytest.fixture
def ch_site(tmp_path: Path) -> Path:
    site = tmp_path / "ch.toml"
    site.write_text(
        'name = "chsite"\n[runtime]\nkind = "charliecloud"\nexecutable = "ch-run"\n'
        '[container]\nconda = "auto"\n'
        f'binds = ["{tmp_path}/proj", "/nonexistent-on-this-host"]\n'
    )
    (tmp_path / "proj").mkdir()
    return site


def make_sqsh(path: Path, payload: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"hsqs" + payload + b"\0" * 92)
    return path


def bound_dir(args: list[str]) -> Path:
    """The host directory a build command binds at /user-software."""
    for word in args:
        for part in word.split(","):
            if part.endswith(":" + venvs.MOUNT_POINT):
                return Path(part[: -len(venvs.MOUNT_POINT) - 1])
    raise AssertionError(f"no bind at {venvs.MOUNT_POINT} in {args}")


def fake_build(installed: list[dict[str, str]] | None = None):
    """A container run that leaves what the build script leaves in the venv."""

    def callback(process) -> None:
        d = bound_dir([str(a) for a in process.args])
        (d / "bin").mkdir()
        (d / "bin" / "activate").write_text('VIRTUAL_ENV="/user-software"\n')
        (d / "pyvenv.cfg").write_text("include-system-site-packages = true\n")
        (d / ".slurmc-installed.json").write_text(
            json.dumps(installed or [{"name": "venvprobe", "version": "0.1.0"}])
        )
        (d / ".slurmc-python").write_text("3.11.2\n")

    return callback


def fake_mksquashfs(seen: list[list[str]] | None = None):
    def callback(process) -> None:
        args = [str(a) for a in process.args]
        src, dest = args[1], args[2]
        if seen is not None:
            seen.append(sorted(os.listdir(src)))
        Path(dest).write_bytes(b"hsqs" + b"\0" * 200)

    return callback


# ------------------------------------------------------------------ names and the store


@pytest.mark.parametrize("name", ["h5-env", "torch_2.3", "A", "x.y-z_1"])
def test_good_names(name: str) -> None:
    assert venvs.check_name(name) == name


@pytest.mark.parametrize("name", ["a/b", "a b", ".hidden", "-x", "..", "ü", "a:b", "a,b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="venv name"):
        venvs.check_name(name)


def test_hostile_names_are_refused(hostile: str) -> None:
    with pytest.raises(ValidationError):
        venvs.check_name(hostile)


def test_store_lookup_order(tmp_path: Path) -> None:
    home = str(tmp_path / "h")
    assert venvs.store_dir({"HOME": home}) == f"{home}/.local/share/slurmc/venvs"
    assert venvs.store_dir({"HOME": home, "XDG_DATA_HOME": "/d"}) == "/d/slurmc/venvs"
    both = {"HOME": home, "XDG_DATA_HOME": "/d", "SLURMC_VENV_DIR": "/p/venvs"}
    assert venvs.store_dir(both) == "/p/venvs"


def test_list_shows_venvs_and_skips_builds_in_progress(env, store: Path) -> None:
    make_sqsh(store / "b.sqsh")
    make_sqsh(store / "a.sqsh")
    (store / "a.json").write_text(json.dumps({"base_image": {"path": "/img.sif"}}))
    make_sqsh(store / ".b.sqsh.packing.host.1.abcd")
    (store / "notes.txt").write_text("x")
    (store / ".unpacked").mkdir()
    found = venvs.list_venvs(env)
    assert [v.name for v in found] == ["a", "b"]
    assert found[0].base_image == "/img.sif" and found[1].base_image is None
    assert found[0].to_dict()["base_image"] == "/img.sif"


def test_list_of_a_missing_store_is_empty(env) -> None:
    assert venvs.list_venvs(env) == []


def test_find_by_name_and_by_path(env, store: Path, tmp_path: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    assert venvs.find_venv("h5", env, str(tmp_path)).path == str(store / "h5.sqsh")
    own = make_sqsh(tmp_path / "work" / "env.sqsh")
    v = venvs.find_venv("work/env.sqsh", env, str(tmp_path))
    assert v.path == str(own) and v.name == "env" and v.store == str(store)


def test_find_missing_names_the_next_step(env, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=r"slurmc venv ls.*slurmc venv create h5"):
        venvs.find_venv("h5", env, str(tmp_path))
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        venvs.find_venv("./nope.sqsh", env, str(tmp_path))


def test_find_refuses_a_file_that_is_not_squashfs(env, tmp_path: Path) -> None:
    (tmp_path / "env.sqsh").write_text("not squashfs")
    with pytest.raises(ValidationError, match="not a SquashFS file"):
        venvs.find_venv("./env.sqsh", env, str(tmp_path))


def test_remove_takes_the_file_the_record_and_unpacked_copies(env, store: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    (store / "h5.json").write_text("{}")
    make_sqsh(store / "h5x.sqsh")  # a name sharing the prefix stays
    v = venvs.find_venv("h5", env, "/")
    other = venvs.find_venv("h5x", env, "/")
    Path(v.unpacked_path).mkdir(parents=True)
    Path(other.unpacked_path).mkdir(parents=True)
    removed = venvs.remove("h5", env)
    assert str(store / "h5.sqsh") in removed and str(store / "h5.json") in removed
    assert not Path(v.unpacked_path).exists() and Path(other.unpacked_path).is_dir()
    assert [x.name for x in venvs.list_venvs(env)] == ["h5x"]
    with pytest.raises(ImageNotFoundError):
        venvs.remove("h5", env)


# ------------------------------------------------------------------ the build script and argv


def test_build_script_activates_conda_as_run_does() -> None:
    with_conda = venv_build.build_script("with_conda")
    assert with_conda.startswith("$WITH_CONDA || ")
    auto = venv_build.build_script("auto")
    assert auto.startswith('if [ -n "${WITH_CONDA:-}" ]; then $WITH_CONDA || ')
    none = venv_build.build_script("none")
    assert "WITH_CONDA" not in none
    other = venv_build.build_script("with_conda", "MY_CONDA")
    assert other.startswith("$MY_CONDA || ")
    for script in (with_conda, auto, none):
        assert "-m venv --system-site-packages /user-software" in script
        assert ". /user-software/bin/activate" in script
        assert 'pip install --disable-pip-version-check --no-input "$@"' in script


def test_build_script_is_valid_bash() -> None:
    import subprocess

    for mode in ("with_conda", "auto", "none"):
        r = subprocess.run(["bash", "-n", "-c", venv_build.build_script(mode)], capture_output=True)
        assert r.returncode == 0, r.stderr


PIP = ["--no-index", "--find-links=/w", "venvprobe"]


@pytest.mark.parametrize("runtime", ["apptainer", "singularity"])
def test_build_argv_apptainer(runtime: str) -> None:
    argv = venv_build.build_argv(runtime, runtime, "/i.sif", "/b/venv", ["/scratch"], "S", PIP)
    assert argv == [
        runtime,
        "exec",
        "-B",
        "/scratch,/b/venv:/user-software",
        "/i.sif",
        "bash",
        "-c",
        "S",
        "slurmc-venv",
        *PIP,
    ]


def test_build_argv_singularityce_mounts_what_its_csv_bind_cannot_carry() -> None:
    argv = venv_build.build_argv("singularity", "singularity", "/i.sif", '/b/v"x', ["/s"], "S", PIP)
    assert argv[:6] == [
        "singularity",
        "exec",
        "-B",
        "/s",
        "--mount",
        'type=bind,"source=/b/v""x",destination=/user-software',
    ]


def test_build_argv_charliecloud() -> None:
    argv = venv_build.build_argv("charliecloud", "ch-run", "/i.sqfs", "/b/venv", ["/p"], "S", PIP)
    assert argv == [
        "ch-run",
        "--set-env",
        "-b",
        "/p",
        "-b",
        "/b/venv:/user-software",
        "/i.sqfs",
        "--",
        "bash",
        "-c",
        "S",
        "slurmc-venv",
        *PIP,
    ]


def test_build_argv_enroot_creates_its_mount_point() -> None:
    argv = venv_build.build_argv("enroot", "enroot", "/i.sqsh", "/b/venv", ["/p:/p"], "S", PIP)
    assert argv[:6] == [
        "enroot",
        "start",
        "--mount",
        "/p:/p:none:x-create=auto,rbind",
        "--mount",
        "/b/venv:/user-software:none:x-create=auto,rbind",
    ]
    assert argv[6:] == ["/i.sqsh", "bash", "-c", "S", "slurmc-venv", *PIP]


def test_build_argv_podman() -> None:
    argv = venv_build.build_argv("podman", "podman", "/i.tar", "/b/venv", [], "S", PIP)
    assert argv[:7] == [
        "podman",
        "run",
        "--rm",
        "--network=host",
        "-v",
        "/b/venv:/user-software",
        "oci-archive:/i.tar",
    ]


def test_build_argv_unknown_runtime() -> None:
    with pytest.raises(ValidationError, match="runtime nope"):
        venv_build.build_argv("nope", "nope", "/i", "/b", [], "S", [])


def test_pip_arguments_stay_separate_words(hostile: str) -> None:
    argv = venv_build.build_argv("singularity", "singularity", "/i.sif", "/b", [], "S", [hostile])
    assert argv[-2:] == ["slurmc-venv", hostile]


def test_srun_argv_wraps_the_local_command_and_uses_pyxis_for_enroot() -> None:
    argv = venv_build.srun_argv(
        "singularity", "singularity", "/i.sif", "/s/b", [], "S", PIP, ["--partition=small"]
    )
    assert argv[:5] == ["srun", "--nodes=1", "--ntasks=1", "--partition=small", "singularity"]
    argv = venv_build.srun_argv("enroot", "enroot", "/i.sqsh", "/s/b", ["/p"], "S", PIP, [])
    assert argv[3:6] == [
        "--container-image=/i.sqsh",
        "--container-mounts=/p,/s/b:/user-software",
        "bash",
    ]


# ------------------------------------------------------------------ planning a build


def test_plan_needs_something_to_install(env, conda_image: Path, tmp_path: Path) -> None:
    req = venv_build.CreateRequest(name="v", image=str(conda_image))
    with pytest.raises(ValidationError, match="nothing to install"):
        venv_build.plan_build(req, env, str(tmp_path))


def test_plan_refuses_an_existing_venv_unless_forced(env, store, conda_image, tmp_path) -> None:
    make_sqsh(store / "v.sqsh")
    req = venv_build.CreateRequest(name="v", image=str(conda_image), packages=("x",), site="x")
    with pytest.raises(ValidationError, match=r"slurmc venv rm v.*--force"):
        venv_build.plan_build(req, env, str(tmp_path))


def test_plan_reads_the_image_statically_for_conda(
    env, conda_image, plain_image, ch_site, tmp_path
):
    cwd = str(tmp_path)
    req = venv_build.CreateRequest(
        name="v", image=str(conda_image), packages=("x",), site=str(ch_site)
    )
    plan = venv_build.plan_build(req, env, cwd)
    assert (plan.runtime, plan.executable) == ("charliecloud", "ch-run")
    assert plan.conda == "with_conda" and plan.with_conda == WITH_CONDA
    assert plan.binds == (f"{tmp_path}/proj",)  # the site's bind missing on this host is left out
    plain = venv_build.CreateRequest(
        name="v", image=str(plain_image), packages=("x",), site=str(ch_site)
    )
    assert venv_build.plan_build(plain, env, cwd).conda == "none"
    forced = venv_build.CreateRequest(
        name="v", image=str(plain_image), packages=("x",), site=str(ch_site), conda="with_conda"
    )
    assert venv_build.plan_build(forced, env, cwd).conda == "with_conda"


def test_plan_puts_requirements_and_pip_args_before_packages(env, conda_image, ch_site, tmp_path):
    (tmp_path / "req.txt").write_text("venvprobe==0.1.0\n")
    req = venv_build.CreateRequest(
        name="v",
        image=str(conda_image),
        packages=("a", "b"),
        requirements="req.txt",
        pip_args=("--no-index",),
        binds=("wheels",),
        site=str(ch_site),
    )
    plan = venv_build.plan_build(req, env, str(tmp_path))
    assert plan.pip_args == (
        "--no-index",
        "-r",
        "/user-software/.slurmc-requirements.txt",
        "a",
        "b",
    )
    assert plan.requirements_text == "venvprobe==0.1.0\n"
    assert plan.binds[-1] == f"{tmp_path}/wheels"


def test_plan_errors(env, conda_image, ch_site, tmp_path) -> None:
    cwd = str(tmp_path)
    with pytest.raises(ValidationError, match=r"-r nope\.txt"):
        venv_build.plan_build(
            venv_build.CreateRequest(
                name="v", image=str(conda_image), requirements="nope.txt", site=str(ch_site)
            ),
            env,
            cwd,
        )
    with pytest.raises(ImageNotFoundError):
        venv_build.plan_build(
            venv_build.CreateRequest(name="v", image="./nope.sif", packages=("x",)), env, cwd
        )
    with pytest.raises(ValidationError, match="--bind"):
        venv_build.plan_build(
            venv_build.CreateRequest(
                name="v", image=str(conda_image), packages=("x",), binds=("a,b",), site=str(ch_site)
            ),
            env,
            cwd,
        )


# ------------------------------------------------------------------ create: build, pack, publish


def test_create_publishes_the_file_and_its_record(
    fp, env, store: Path, conda_image, ch_site, tmp_path, private_tmp
) -> None:
    fp.register(["ch-run", fp.any()], callback=fake_build())
    packed: list[list[str]] = []
    fp.register(["mksquashfs", fp.any()], callback=fake_mksquashfs(packed))
    (tmp_path / "req.txt").write_text("venvprobe\n")
    req = venv_build.CreateRequest(
        name="probe",
        image=str(conda_image),
        packages=("venvprobe",),
        requirements="req.txt",
        pip_args=("--no-index", "--find-links=/w"),
        site=str(ch_site),
    )
    notes: list[str] = []
    v = venv_build.create(req, env, str(tmp_path), notify=notes.append)
    assert v.path == str(store / "probe.sqsh") and v.name == "probe"
    assert sorted(os.listdir(store)) == ["probe.json", "probe.sqsh"]  # no temporary left
    assert os.listdir(private_tmp) == []  # the build tree is gone
    assert stat.S_IMODE(os.stat(v.path).st_mode) == 0o644
    # slurmc's notes were taken out of the venv before packing
    assert packed == [["bin", "pyvenv.cfg"]]
    meta = json.loads((store / "probe.json").read_text())
    assert meta["base_image"]["path"] == str(conda_image)
    assert meta["packages"] == ["venvprobe"] and meta["pip_args"] == [
        "--no-index",
        "--find-links=/w",
    ]
    assert meta["requirements_text"] == "venvprobe\n"
    assert meta["installed"] == [{"name": "venvprobe", "version": "0.1.0"}]
    assert meta["python"] == "3.11.2" and meta["conda"] == "with_conda"
    assert meta["runtime"] == "charliecloud" and meta["created"]
    assert "probe" in notes[0] and "charliecloud" in notes[0]
    build = next(c for c in fp.calls if c[0] == "ch-run")
    assert build[-5:] == [
        "--no-index",
        "--find-links=/w",
        "-r",
        "/user-software/.slurmc-requirements.txt",
        "venvprobe",
    ]
    assert build[1] == "--set-env" and f"{tmp_path}/proj" in build


def test_failing_pip_leaves_nothing_behind(
    fp, env, store: Path, conda_image, ch_site, tmp_path, private_tmp
) -> None:
    fp.register(
        ["ch-run", fp.any()],
        returncode=1,
        stderr="ERROR: Could not find a version that satisfies the requirement nosuchpkg\n"
        "ERROR: No matching distribution found for nosuchpkg\n",
    )
    req = venv_build.CreateRequest(
        name="bad", image=str(conda_image), packages=("nosuchpkg",), site=str(ch_site)
    )
    with pytest.raises(ExternalCommandError, match=r"No matching distribution.*nothing was kept"):
        venv_build.create(req, env, str(tmp_path))
    assert os.listdir(store) == []
    assert os.listdir(private_tmp) == []


def test_failing_mksquashfs_leaves_nothing_behind(
    fp, env, store: Path, conda_image, ch_site, tmp_path, private_tmp
) -> None:
    fp.register(["ch-run", fp.any()], callback=fake_build())

    def half_written(process) -> None:
        Path(str(process.args[2])).write_bytes(b"hsqs")

    fp.register(["mksquashfs", fp.any()], callback=half_written, returncode=1, stderr="disk full")
    req = venv_build.CreateRequest(
        name="v", image=str(conda_image), packages=("x",), site=str(ch_site)
    )
    with pytest.raises(ExternalCommandError, match="disk full"):
        venv_build.create(req, env, str(tmp_path))
    assert os.listdir(store) == [] and os.listdir(private_tmp) == []


def test_missing_mksquashfs_says_what_to_install(
    fp, env, conda_image, ch_site, tmp_path, private_tmp
) -> None:
    fp.register(["ch-run", fp.any()], callback=fake_build())

    def missing(process) -> None:
        raise FileNotFoundError("mksquashfs")

    fp.register(["mksquashfs", fp.any()], callback=missing)
    req = venv_build.CreateRequest(
        name="v", image=str(conda_image), packages=("x",), site=str(ch_site)
    )
    with pytest.raises(ToolMissingError, match="squashfs-tools"):
        venv_build.create(req, env, str(tmp_path))


def test_charliecloud_without_mount_point_gets_a_hint(
    fp, env, conda_image, ch_site, tmp_path, private_tmp
) -> None:
    fp.register(
        ["ch-run", fp.any()],
        returncode=1,
        stderr="ch-run[1]: error: can't mkdir: /var/tmp/x/user-software: Read-only file system\n",
    )
    req = venv_build.CreateRequest(
        name="v", image=str(conda_image), packages=("x",), site=str(ch_site)
    )
    with pytest.raises(ExternalCommandError, match=r"RUN mkdir /user-software"):
        venv_build.create(req, env, str(tmp_path))


def test_force_replaces_and_keeps_unpacked_copies_for_queued_jobs(
    fp, env, store: Path, conda_image, ch_site, tmp_path, private_tmp
) -> None:
    old = make_sqsh(store / "v.sqsh", b"old")
    v_old = venvs.find_venv("v", env, str(tmp_path))
    Path(v_old.unpacked_path).mkdir(parents=True)
    fp.register(["ch-run", fp.any()], callback=fake_build())
    fp.register(["mksquashfs", fp.any()], callback=fake_mksquashfs())
    req = venv_build.CreateRequest(
        name="v", image=str(conda_image), packages=("x",), site=str(ch_site), force=True
    )
    v = venv_build.create(req, env, str(tmp_path))
    assert old.read_bytes()[:7] != b"hsqsold" and v.size == 204
    assert Path(v_old.unpacked_path).is_dir()  # a queued job's script names it
    assert v.unpacked_path != v_old.unpacked_path
    venvs.remove("v", env)
    assert not Path(v_old.unpacked_path).exists()


def test_a_venv_created_meanwhile_is_not_overwritten(
    fp, env, store: Path, conda_image, ch_site, tmp_path, private_tmp
) -> None:
    def build_and_race(process) -> None:
        fake_build()(process)
        make_sqsh(store / "v.sqsh", b"theirs")

    fp.register(["ch-run", fp.any()], callback=build_and_race)
    fp.register(["mksquashfs", fp.any()], callback=fake_mksquashfs())
    req = venv_build.CreateRequest(
        name="v", image=str(conda_image), packages=("x",), site=str(ch_site)
    )
    with pytest.raises(ValidationError, match="created by another command meanwhile"):
        venv_build.create(req, env, str(tmp_path))
    assert (store / "v.sqsh").read_bytes().startswith(b"hsqstheirs")
    assert sorted(os.listdir(store)) == ["v.sqsh"]


def test_on_node_builds_in_the_store_through_srun(
    fp, env, store: Path, conda_image, ch_site, tmp_path
) -> None:
    seen: list[list[str]] = []

    def build(process) -> None:
        seen.append([str(a) for a in process.args])
        fake_build()(process)

    fp.register(["srun", fp.any()], callback=build)
    fp.register(["mksquashfs", fp.any()], callback=fake_mksquashfs())
    req = venv_build.CreateRequest(
        name="v",
        image=str(conda_image),
        packages=("x",),
        site=str(ch_site),
        on_node=True,
        srun_options=("--partition=small",),
    )
    venv_build.create(req, env, str(tmp_path))
    argv = seen[0]
    assert argv[:5] == ["srun", "--nodes=1", "--ntasks=1", "--partition=small", "ch-run"]
    assert str(bound_dir(argv)).startswith(str(store) + "/.v.build.")  # visible to the node


# ------------------------------------------------------------------ using a venv in a job


def test_binds_per_runtime(env, store: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    v = venvs.find_venv("h5", env, "/")
    sq = str(store / "h5.sqsh")
    assert venvs.venv_binds("singularity", v) == [f"{sq}:/user-software:image-src=/"]
    assert venvs.venv_binds("apptainer", v) == [f"{sq}:/user-software:image-src=/"]
    assert venvs.venv_binds("charliecloud", v) == [f"{v.unpacked_path}:/user-software"]
    assert venvs.venv_binds("enroot", v) == [f"{v.unpacked_path}:/user-software:ro"]
    assert venvs.venv_binds("podman", v) == [f"{v.unpacked_path}:/user-software:ro"]
    assert v.unpacked_path.startswith(str(store / ".unpacked" / "h5-"))
    with pytest.raises(ValidationError, match="runtime nope"):
        venvs.venv_binds("nope", v)


def test_a_path_no_bind_list_can_carry_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "a,b"
    v = venvs.find_venv(str(make_sqsh(d / "env.sqsh")), {"HOME": str(tmp_path)}, "/")
    with pytest.raises(ValidationError, match="SLURMC_VENV_DIR"):
        venvs.venv_binds("singularity", v)


def test_unpacked_copy_changes_with_the_file(env, store: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    a = venvs.find_venv("h5", env, "/").unpacked_path
    make_sqsh(store / "h5.sqsh", b"a new build, another size")
    assert venvs.find_venv("h5", env, "/").unpacked_path != a


def test_prepare_is_nothing_for_apptainer(fp, env, store: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    v = venvs.find_venv("h5", env, "/")
    assert venvs.prepare(v, "singularity") == v.path
    assert len(fp.calls) == 0


def test_prepare_unpacks_once(fp, env, store: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    v = venvs.find_venv("h5", env, "/")

    def unsquash(process) -> None:
        args = [str(a) for a in process.args]
        dest = Path(args[args.index("-d") + 1])
        (dest / "bin").mkdir(parents=True)

    fp.register(["unsquashfs", fp.any()], callback=unsquash)
    assert venvs.prepare(v, "charliecloud") == v.unpacked_path
    assert (Path(v.unpacked_path) / "bin").is_dir()
    assert venvs.prepare(v, "charliecloud") == v.unpacked_path  # no second unsquashfs
    assert len(fp.calls) == 1
    assert fp.calls[0][-1] == v.path and "-no-xattrs" in fp.calls[0]
    assert os.listdir(Path(v.unpacked_path).parent) == [os.path.basename(v.unpacked_path)]


def test_prepare_loses_a_race_gracefully(fp, env, store: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    v = venvs.find_venv("h5", env, "/")

    def unsquash_while_another_wins(process) -> None:
        args = [str(a) for a in process.args]
        Path(args[args.index("-d") + 1], "mine").mkdir(parents=True)
        Path(v.unpacked_path, "theirs").mkdir(parents=True)

    fp.register(["unsquashfs", fp.any()], callback=unsquash_while_another_wins)
    assert venvs.prepare(v, "enroot") == v.unpacked_path
    assert os.listdir(v.unpacked_path) == ["theirs"]
    assert os.listdir(Path(v.unpacked_path).parent) == [os.path.basename(v.unpacked_path)]


def test_prepare_failure_leaves_no_partial_copy(fp, env, store: Path) -> None:
    make_sqsh(store / "h5.sqsh")
    v = venvs.find_venv("h5", env, "/")

    def broken(process) -> None:
        args = [str(a) for a in process.args]
        Path(args[args.index("-d") + 1]).mkdir(parents=True)

    fp.register(["unsquashfs", fp.any()], callback=broken, returncode=1, stderr="corrupt")
    with pytest.raises(ExternalCommandError, match="corrupt"):
        venvs.prepare(v, "podman")
    assert os.listdir(Path(v.unpacked_path).parent) == []


def test_activation_step() -> None:
    assert venvs.activation() == "source /user-software/bin/activate"


def test_base_mismatch(env, store: Path, tmp_path: Path) -> None:
    image = tmp_path / "img.sif"
    image.write_bytes(b"x" * 10)
    st = image.stat()
    make_sqsh(store / "h5.sqsh")
    base = {"path": str(image), "size": st.st_size, "mtime": st.st_mtime}
    (store / "h5.json").write_text(json.dumps({"base_image": base}))
    v = venvs.find_venv("h5", env, "/")
    assert venvs.base_mismatch(v, str(image)) is None
    other = tmp_path / "other.sif"
    other.write_bytes(b"y")
    assert "was built on" in (venvs.base_mismatch(v, str(other)) or "")
    image.write_bytes(b"x" * 11)
    assert "changed since" in (venvs.base_mismatch(v, str(image)) or "")
    make_sqsh(store / "bare.sqsh")
    assert venvs.base_mismatch(venvs.find_venv("bare", env, "/"), str(image)) is None


# ------------------------------------------------------------------ slurmc build (cotainr)


def test_cotainr_argv_is_the_lumi_recipe() -> None:
    argv = build.cotainr_argv(
        "h5.sif", base_image="/appl/x.sif", system=None, conda_env="/h/h5-env.yml"
    )
    assert argv == [
        "cotainr",
        "build",
        "h5.sif",
        "--base-image=/appl/x.sif",
        "--conda-env=/h/h5-env.yml",
    ]
    argv = build.cotainr_argv(
        "o.sif", base_image=None, system="lumi-g", conda_env="e.yml", accept_licenses=True
    )
    assert argv[3:] == ["--system=lumi-g", "--conda-env=e.yml", "--accept-licenses"]


@pytest.fixture
def cotainr_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "cotainr"
    exe.write_text("#!/bin/sh\nexit 99\n")  # never run: pytest-subprocess answers
    exe.chmod(0o755)
    (tmp_path / "h5-env.yml").write_text("name: h5-env\ndependencies:\n  - pip:\n    - h5py\n")
    (tmp_path / "base.sif").write_bytes(b"sif")
    return {**env, "PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_build_with_cotainr_writes_out_atomically(fp, cotainr_env, tmp_path: Path) -> None:
    def cotainr(process) -> None:
        Path(str(process.args[2])).write_bytes(b"new image")

    fp.register(["cotainr", fp.any()], callback=cotainr)
    out = build.build_with_cotainr(
        "h5.sif",
        base_image="base.sif",
        system=None,
        conda_env="h5-env.yml",
        accept_licenses=True,
        force=False,
        env=cotainr_env,
        cwd=str(tmp_path),
    )
    assert out == str(tmp_path / "h5.sif") and Path(out).read_bytes() == b"new image"
    argv = [str(a) for a in fp.calls[0]]
    assert argv[:2] == ["cotainr", "build"] and argv[2].startswith(str(tmp_path / ".h5.sif."))
    assert argv[3:] == [
        f"--base-image={tmp_path}/base.sif",
        f"--conda-env={tmp_path}/h5-env.yml",
        "--accept-licenses",
    ]
    assert sorted(p.name for p in tmp_path.glob(".h5.sif*")) == []


def test_build_with_cotainr_failure_writes_nothing(fp, cotainr_env, tmp_path: Path) -> None:
    def cotainr(process) -> None:
        Path(str(process.args[2])).write_bytes(b"half")

    fp.register(["cotainr", fp.any()], callback=cotainr, returncode=1)
    with pytest.raises(ExternalCommandError, match="was not written"):
        build.build_with_cotainr(
            "h5.sif",
            base_image="docker://ubuntu:24.04",
            system=None,
            conda_env="h5-env.yml",
            accept_licenses=False,
            force=False,
            env=cotainr_env,
            cwd=str(tmp_path),
        )
    assert not (tmp_path / "h5.sif").exists() and list(tmp_path.glob(".h5.sif*")) == []
    assert "--base-image=docker://ubuntu:24.04" in [str(a) for a in fp.calls[0]]


def test_build_without_cotainr_says_how_to_get_it(env, tmp_path: Path) -> None:
    (tmp_path / "e.yml").write_text("name: e\n")
    with pytest.raises(ToolMissingError, match=r"module load CrayEnv cotainr.*pip install cotainr"):
        build.build_with_cotainr(
            "o.sif",
            base_image="docker://ubuntu:24.04",
            system=None,
            conda_env="e.yml",
            accept_licenses=False,
            force=False,
            env=env,
            cwd=str(tmp_path),
        )


def test_build_checks_before_running(cotainr_env, tmp_path: Path) -> None:
    kw = {"conda_env": "h5-env.yml", "accept_licenses": False, "env": cotainr_env}
    cwd = str(tmp_path)
    with pytest.raises(ValidationError, match="exactly one"):
        build.build_with_cotainr("o.sif", base_image=None, system=None, force=False, cwd=cwd, **kw)
    with pytest.raises(ValidationError, match="exactly one"):
        build.build_with_cotainr(
            "o.sif", base_image="base.sif", system="lumi-g", force=False, cwd=cwd, **kw
        )
    (tmp_path / "o.sif").write_text("old")
    with pytest.raises(ValidationError, match="--force"):
        build.build_with_cotainr(
            "o.sif", base_image="base.sif", system=None, force=False, cwd=cwd, **kw
        )
    with pytest.raises(ImageNotFoundError):
        build.build_with_cotainr(
            "n.sif", base_image="nope.sif", system=None, force=False, cwd=cwd, **kw
        )
    with pytest.raises(ValidationError, match="no such file"):
        build.build_with_cotainr(
            "n.sif",
            base_image="base.sif",
            system=None,
            force=False,
            cwd=cwd,
            **{**kw, "conda_env": "nope.yml"},
        )
