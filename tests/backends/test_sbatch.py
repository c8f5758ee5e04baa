"""Unit tests of the sbatch backend's argv and error handling (pytest-subprocess).

The real thing is proven in tests/integration against a real Slurm."""

from __future__ import annotations

import pytest

from slurmc.backends import get_backend, parse_parsable
from slurmc.errors import ConfigError, ExternalCommandError, SubmissionError, ToolMissingError


@pytest.mark.parametrize(
    ("stdout", "job", "cluster"),
    [
        ("1234\n", "1234", None),
        ("1234;lumi\n", "1234", "lumi"),
        ("Welcome to LUMI!\nRemember: quota\n5678;lumi\n", "5678", "lumi"),
        ("  42  \n\n", "42", None),
    ],
)
def test_parse_parsable(stdout, job, cluster):
    sub = parse_parsable(stdout)
    assert (sub.job_id, sub.cluster) == (job, cluster)


def test_parse_parsable_without_an_id():
    with pytest.raises(SubmissionError, match="squeue --me"):
        parse_parsable("sbatch: something odd\n")


def test_submit_sends_the_script_on_stdin(fp):
    fp.register(["sbatch", "--parsable"], stdout="77;dev\n")
    sub = get_backend("sbatch").submit("#!/bin/bash\ntrue\n", cwd="/tmp")
    assert sub.job_id == "77"
    assert fp.call_count(["sbatch", "--parsable"]) == 1


def test_submit_failure_carries_stderr(fp):
    fp.register(
        ["sbatch", "--parsable"],
        returncode=1,
        stderr="sbatch: error: Batch job submission failed: Invalid partition name specified\n",
    )
    with pytest.raises(ExternalCommandError, match="Invalid partition name specified"):
        get_backend("sbatch").submit("#!/bin/bash\n", cwd="/tmp")


def test_missing_sbatch(fp):
    fp.register(["sbatch", "--parsable"], callback=_raise_fnf)
    with pytest.raises(ToolMissingError, match="sbatch not found on PATH"):
        get_backend("sbatch").submit("#!/bin/bash\n", cwd="/tmp")


def _raise_fnf(process):
    raise FileNotFoundError("sbatch")


def test_interactive_runs_salloc_with_the_options_then_the_step(fp):
    fp.register(
        ["salloc", "--partition=small", "bash", "-c", "srun x", "slurmc-step"], returncode=3
    )
    code = get_backend("sbatch").run_interactive(["--partition=small"], "srun x", cwd="/tmp")
    assert code == 3


def test_pyslurm_backend_is_refused_clearly_where_it_does_not_import():
    try:
        import pyslurm  # type: ignore[import-not-found]  # noqa: F401
    except Exception:
        with pytest.raises(ConfigError, match="import pyslurm"):
            get_backend("pyslurm")
    else:  # pragma: no cover - a machine with a matching pyslurm
        assert get_backend("pyslurm").name == "pyslurm"


def test_unknown_backend():
    with pytest.raises(ConfigError, match="unknown backend"):
        get_backend("lsf")
