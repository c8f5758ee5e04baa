"""Rendering: golden files per site x runtime, bash -n and shellcheck on each."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from slurmc.core.plan import JobRequest
from slurmc.core.render import render, render_batch, render_step
from slurmc.core.roots import ResolvedImage
from slurmc.core.sites import load_site
from slurmc.errors import TemplateError
from slurmc.grammar.quoting import Quoted
from slurmc.grammar.refs import ImageSpec
from slurmc.runtimes import available
from slurmc.usecases.submit import plan_job as plan
from slurmc.values import replace

GOLDEN = Path(__file__).parents[1] / "golden"
SITES = sorted(p.stem for p in (Path(__file__).parents[2] / "site-configs").glob("*.toml"))
COMMAND = ("python", "train.py", "--lr", "3e-4", "it's $HOME", "a\nb", "#SBATCH -p evil")


def make_job(site_name: str, runtime: str | None, env: dict[str, str], tmp_path: Path, **kw):
    site = load_site(site_name, env)
    if runtime:
        site = replace(
            site,
            runtime=runtime,
            executable={"enroot": "enroot", "charliecloud": "ch-run"}.get(runtime, runtime),
        )
    img = tmp_path / "img.sif"
    img.write_bytes(b"")
    partition = next((p for p, v in site.partitions.items() if v.gpu_vendor != "none"), None)
    req = JobRequest(
        image=str(img),
        command=COMMAND,
        resources={
            "account": "project_465000001",
            "partition": partition,
            "time": "30:00",
            "gpus_per_node": "2" if partition else None,
        },
        env=("MY_VAR=a b,c",),
        binds=("/data:/data:ro",) if site.runtime != "charliecloud" else ("/data:/data",),
        **kw,
    )
    return fixed_image(plan(req, site, env, "/home/user/project"))


def check_golden(name: str, text: str) -> None:
    """Always compares; scripts/update-golden rewrites the files (and asserts nothing)."""
    path = GOLDEN / name
    assert path.exists(), f"no golden file {path}; run scripts/update-golden"
    assert text == path.read_text(), f"{name} differs; if intended, run scripts/update-golden"


def golden_cases(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Every golden file's name and the script it must hold (used by scripts/update-golden)."""
    out = {}
    for site_name in SITES:
        for runtime in [r for r in available() if r != "singularity"] + [None]:
            job = make_job(site_name, runtime, env, tmp_path)
            out[f"{site_name}-{runtime or 'own'}.sh"] = render_batch(job)
        job = make_job(site_name, None, env, tmp_path, interactive=True)
        out[f"{site_name}-step.sh"] = render_step(job)
    out["lumi-standard-g-binding.sh"] = render_batch(fixed_image(binding_job(env, tmp_path)))
    return out


def fixed_image(job):
    fixed = "/shared/images/demo image.sif"
    spec = ImageSpec(kind="path", text=fixed, path=fixed)
    return replace(job, image=ResolvedImage(spec, fixed, "path"))


def binding_job(env: dict[str, str], tmp_path: Path):
    site = load_site("lumi", env)
    img = tmp_path / "img.sif"
    img.write_bytes(b"")
    req = JobRequest(
        image=str(img),
        command=("python", "train.py"),
        resources={
            "account": "p",
            "partition": "standard-g",
            "nodes": "2",
            "gpus_per_node": "8",
            "ntasks_per_node": "8",
            "time": "1:00:00",
        },
    )
    return plan(req, site, env, "/home/user")


def bash_n(text: str) -> None:
    r = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def shellcheck(text: str) -> None:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed (scripts/devcluster install provides it)"
    r = subprocess.run([exe, "-s", "bash", "-"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("runtime", [r for r in available() if r != "singularity"] + [None])
@pytest.mark.parametrize("site_name", SITES)
def test_site_by_runtime(site_name, runtime, clean_env, tmp_path):
    job = make_job(site_name, runtime, clean_env, tmp_path)
    text = render_batch(job)
    bash_n(text)
    shellcheck(text)
    check_golden(f"{site_name}-{runtime or 'own'}.sh", text)


@pytest.mark.parametrize("site_name", SITES)
def test_interactive_step(site_name, clean_env, tmp_path):
    text = render_step(make_job(site_name, None, clean_env, tmp_path, interactive=True))
    assert "#SBATCH" not in text.split("\n", 1)[0]
    bash_n(text)
    shellcheck(text)
    check_golden(f"{site_name}-step.sh", text)


def test_lumi_script_has_the_seed_shape(clean_env, tmp_path):
    text = render_batch(make_job("lumi", None, clean_env, tmp_path))
    assert "srun singularity exec --rocm" in text
    assert (
        'bash -c \'export "${@:1:1}" && shift 1 && $WITH_CONDA && exec "$@"\' '
        "slurmc 'MY_VAR=a b,c' python train.py"
    ) in text
    assert "#SBATCH --partition=small-g\n" in text and "#SBATCH --gpus-per-node=2\n" in text
    # the user's '#SBATCH' word is inside a quoted argument, after the first command
    directives = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    assert not any("evil" in d for d in directives)


def test_no_raw_control_characters_reach_the_script(clean_env, tmp_path, hostile):
    job = make_job("lumi", None, clean_env, tmp_path)
    job = replace(job, command=("echo", hostile))
    text = render_batch(job)
    assert all(line.isprintable() for line in text.splitlines())


def test_template_may_not_print_unquoted_values(tmp_path, clean_env):
    (tmp_path / "bad.j2").write_text("echo {{ value }}\n")
    with pytest.raises(TemplateError, match="unquoted value"):
        render("bad.j2", [str(tmp_path)], value="$(rm -rf ~)")
    (tmp_path / "good.j2").write_text("echo {{ value|q }}\n")
    assert render("good.j2", [str(tmp_path)], value="$(x)") == "echo '$(x)'\n"


def test_user_templates_override_bundled_ones(clean_env, tmp_path):
    tdir = Path(clean_env["XDG_CONFIG_HOME"]) / "slurmc" / "templates"
    tdir.mkdir(parents=True)
    (tdir / "sbatch.sh.j2").write_text("#!/bin/bash\n# mine\n{% include 'step.sh.j2' %}")
    text = render_batch(make_job("devcluster", None, clean_env, tmp_path))
    assert text.startswith("#!/bin/bash\n# mine\n") and "ch-run" in text


LUMI_MASKS = (  # LUMI's documented GCD order, c = fe (FIELD-NOTES §4)
    "0xfe000000000000,0xfe00000000000000,0xfe0000,0xfe000000,"
    "0xfe,0xfe00,0xfe00000000,0xfe0000000000"
)


def test_lumi_standard_g_whole_node_binds_each_task_to_its_gcd(clean_env, tmp_path):
    job = binding_job(clean_env, tmp_path)
    text = render_batch(job)
    assert f"srun --cpu-bind=mask_cpu:{LUMI_MASKS} singularity exec --rocm" in text
    assert "'export ROCR_VISIBLE_DEVICES=$SLURM_LOCALID && $WITH_CONDA && exec \"$@\"'" in text
    bash_n(text)
    shellcheck(text)
    check_golden("lumi-standard-g-binding.sh", render_batch(fixed_image(job)))


def test_golden_cases_cover_every_golden_file(clean_env, tmp_path):
    names = set(golden_cases(clean_env, tmp_path))
    assert names == {p.name for p in GOLDEN.glob("*.sh")}


def test_binding_is_skipped_and_said_on_a_shared_allocation(clean_env, tmp_path):
    site = load_site("lumi", clean_env)
    img = tmp_path / "img.sif"
    img.write_bytes(b"")
    base = {"account": "p", "partition": "small-g", "gpus_per_node": "2"}
    job = plan(JobRequest(image=str(img), command=("x",), resources=base), site, clean_env, "/")
    assert job.cpu_bind == () and "GPU binding skipped" in job.notes[0]
    assert "--cpu-bind" not in render_batch(job) and "# Note: GPU binding skipped" in render_batch(
        job
    )
    job = plan(
        JobRequest(image=str(img), command=("x",), resources=base, extra=("--exclusive",)),
        site,
        clean_env,
        "/",
    )
    assert ",".join(job.cpu_bind) == LUMI_MASKS and job.notes == ()


def test_a_colon_word_never_reaches_srun_bare(clean_env, tmp_path):
    """srun splits its command line at a bare ':' (heterogeneous jobs), even after the
    command: such words are wrapped and unwrapped inside the container."""
    job = make_job("devcluster", None, clean_env, tmp_path)
    job = replace(job, command=("echo", ":", "a:b", "+:"), conda="none")
    line = render_batch(job).rstrip().splitlines()[-1]
    assert ":" not in shlex.split(line)  # what srun's argv would hold
    r = subprocess.run(
        ["bash", "-c", f"set -- ; eval {shlex.quote(line.strip())}"], capture_output=True, text=True
    )
    assert r.stdout == ": a:b +:\n"


def _template(tmp_path: Path, text: str, name: str = "t.j2") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize(
    ("value", "out"),
    [(None, "[]"), ("", "[]"), (3, "[3]"), (0, "[0]"), (Quoted("$X"), "[$X]")],
)
def test_printable_values(tmp_path, value, out):
    assert render("t.j2", [_template(tmp_path, "[{{ v }}]")], v=value) == out


@pytest.mark.parametrize("value", ["x", " ", True, False, 1.5, ["a"]])
def test_unquoted_values_are_a_template_error(tmp_path, value):
    with pytest.raises(TemplateError, match=r"^template prints the unquoted value .*\|q"):
        render("t.j2", [_template(tmp_path, "[{{ v }}]")], v=value)


def test_the_quoting_filters(tmp_path):
    path = _template(tmp_path, "{{ w|q }} {{ ws|qjoin }} {{ version }}\n")
    out = render("t.j2", [path], w="it's", ws=["a b", "$c"])
    assert out.startswith("'it'\\''s' 'a b' '$c' ")
    assert out.endswith("\n")  # keep_trailing_newline


def test_a_missing_template_is_named_with_the_search_path(tmp_path):
    with pytest.raises(TemplateError, match=r"^template 'nope.j2' not found in /a, /b$"):
        render("nope.j2", ["/a", "/b"])


@pytest.mark.parametrize(
    ("text", "reason"),
    [("{% if %}", "t.j2: "), ("{{ nope|q }}", "t.j2: 'nope' is undefined")],
)
def test_template_errors_name_the_template(tmp_path, text, reason):
    with pytest.raises(TemplateError, match=f"^template {reason}"):
        render("t.j2", [_template(tmp_path, text)])


def test_blocks_trim_their_lines(tmp_path):
    path = _template(tmp_path, "a\n  {% if true %}\nb\n  {% endif %}\nc\n")
    assert render("t.j2", [path]) == "a\nb\nc\n"


def test_the_unquoted_value_is_shown_cut_at_40_characters(tmp_path):
    value = "a" * 39 + "b" + "c" * 10
    with pytest.raises(TemplateError) as exc:
        render("t.j2", [_template(tmp_path, "{{ v }}")], v=value)
    assert f"value {value[:40]!r}; pass it" in str(exc.value)
