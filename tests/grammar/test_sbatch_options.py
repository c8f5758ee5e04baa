"""--sbatch-arg read as sbatch reads it, ASCII-only numbers, job ids in Slurm's range.

(Separate classes from the other tests of resources.py, to keep merges simple.) The
option table is checked against real sbatch 22.05 in tests/integration/test_sbatch_arg.py.
"""

from __future__ import annotations

import pytest

from slurmc.core.resources import Resources
from slurmc.errors import ValidationError
from slurmc.grammar.sbatch_options import OPTIONS, parse
from slurmc.usecases.records import check_job_id


class TestSbatchArgParse:
    @pytest.mark.parametrize(
        ("arg", "want"),
        [
            ("--comment=x", [("--comment", "x")]),
            ("--comm=mine", [("--comment", "mine")]),
            ("--com=a=b", [("--comment", "a=b")]),
            ("--exclusive", [("--exclusive", None)]),
            ("--exclusiv", [("--exclusive", None)]),
            ("--exclusive=user", [("--exclusive", "user")]),
            ("--tasks-per=2", [("--tasks-per-node", "2")]),
            ("--hold", [("--hold", None)]),
            ("-H", [("--hold", None)]),
            ("-Hv", [("--hold", None), ("--verbose", None)]),
            ("-Jname x", [("--job-name", "name x")]),
            ("-N2", [("--nodes", "2")]),
            ("--job-name=a --comment=b", [("--job-name", "a --comment=b")]),
            ("--tres-bind=x", [("--tres-bind", "x")]),
        ],
    )
    def test_one_argument_is_read_as_sbatch_reads_it(self, arg, want):
        assert parse(arg) == want

    @pytest.mark.parametrize(
        ("arg", "why"),
        [
            ("--co=1", "ambiguous"),
            ("--excl", "ambiguous"),
            ("--hold --comment=two", "not one sbatch option"),
            ("--hold=--comment=two", "takes no value"),
            ("--comment", "needs a value"),
            ("-J", "needs its value"),
            ("-Z", "not an sbatch option"),
            ("comment=x", "not one sbatch option"),
            ("-", "not one sbatch option"),
            ("--", "not one sbatch option"),
        ],
    )
    def test_what_sbatch_would_refuse_or_misread_is_refused(self, arg, why):
        with pytest.raises(ValidationError, match=why):
            parse(arg)
        with pytest.raises(ValidationError):
            Resources(extra=(arg,))

    def test_the_table_is_sbatch_2205s(self):
        names = {o[0] for o in OPTIONS}
        assert len(OPTIONS) == 106 and {"comment", "exclusive", "hold", "wrap"} <= names
        assert {o[2] for o in OPTIONS if o[2]} >= set("AaBbCcDdeFGHhiJkLMmNnOopQqSstVvWwx")

    def test_every_option_comes_out_in_full_whatever_the_spelling(self):
        res = Resources(extra=("--comm=mine", "-Hv", "--exclusiv"))
        assert res.extra_options() == [
            ("--comment", "mine"),
            ("--hold", None),
            ("--verbose", None),
            ("--exclusive", None),
        ]
        assert res.asks("--exclusive") and res.asks("--comment") and not res.asks("--wrap")


class TestAsciiNumbers:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("time", "١٢٣"),
            ("time", "1-٠٢:00"),
            ("mem", "٨G"),
            ("nodes", "٢"),
            ("gpus_per_node", "mi250:٨"),
            ("gpus_per_node", "\uff18"),  # fullwidth 8
            ("cpus_per_task", "٣"),
            ("ntasks_per_node", "\U0001d7da"),  # double-struck 2
        ],
    )
    def test_unicode_digits_are_refused(self, field, value):
        with pytest.raises(ValidationError, match=f"--{field.replace('_', '-')}"):
            Resources(**{field: value})

    @pytest.mark.parametrize(
        ("field", "value"),
        [("time", "123"), ("mem", "8G"), ("nodes", "2"), ("gpus_per_node", "mi250:8")],
    )
    def test_ascii_digits_pass(self, field, value):
        Resources(**{field: value})


class TestJobIds:
    @pytest.mark.parametrize("text", ["1", "1234", "4294967293", "12_3", "4294967293_4294967293"])
    def test_ids_in_slurms_range(self, text):
        assert check_job_id(text) == text

    @pytest.mark.parametrize(
        "text",
        [
            str(4294967296 + 1234),  # scancel would cut it to 1234
            "4294967294",  # NO_VAL
            "4294967295",  # INFINITE
            "0",
            "١٢٣",
            "1_٢",
            "99999999999999999999999",
            "12_99999999999",
            "-1",
            "1 ",
            "",
        ],
    )
    def test_ids_slurm_would_misread_are_refused(self, text):
        with pytest.raises(ValidationError, match="not a job id"):
            check_job_id(text)


class TestExclusiveForGpuBinding:
    """The same parse decides --exclusive for LUMI-G binding, whatever the spelling."""

    @pytest.mark.parametrize(
        ("extra", "bound"),
        [
            (("--exclusive",), True),
            (("--exclusiv",), True),
            (("--exclusive=user",), True),
            (("--hold",), False),
            (("--exclude=n1",), False),
            (("--job-name=--exclusive",), False),
        ],
    )
    def test_binding(self, clean_env, tmp_path, extra, bound):
        from slurmc.core.plan import JobRequest
        from slurmc.core.sites import load_site
        from slurmc.usecases.submit import plan_job as plan

        site = load_site("lumi", clean_env)
        img = tmp_path / "img.sif"
        img.write_bytes(b"")
        base = {"account": "p", "partition": "small-g", "gpus_per_node": "2"}
        req = JobRequest(image=str(img), command=("x",), resources=base, extra=extra)
        job = plan(req, site, clean_env, "/")
        assert bool(job.cpu_bind) is bound
