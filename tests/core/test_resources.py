"""Slurm resource options: the formats sbatch accepts are accepted, the rest refused.

The accepted forms follow sbatch(1): --time "minutes", "minutes:seconds",
"hours:minutes:seconds", "days-hours", "days-hours:minutes",
"days-hours:minutes:seconds", plus UNLIMITED/INFINITE; --mem a number with an
optional K/M/G/T suffix. (--sbatch-arg parsing is pinned in its own change.)
"""

from __future__ import annotations

import pytest

from slurmc.core.resources import (
    DEFAULTABLE,
    OPTIONS,
    Resources,
    validate,
    validate_defaults,
    with_defaults,
)
from slurmc.errors import ConfigError, ValidationError


@pytest.mark.parametrize(
    "value",
    [
        "30",
        "30:00",
        "1:00:00",
        "10:0:0",
        "2-0",
        "2-00",
        "2-00:00",
        "2-00:00:00",
        "10-5:3:9",
        "UNLIMITED",
        "INFINITE",
        "0",
    ],
)
def test_time_accepts_sbatch_forms(value):
    validate("time", value)
    assert Resources(time=value).options() == [("--time", value)]


@pytest.mark.parametrize(
    "value",
    [
        "",
        ":30",
        "1:000",
        "1:00:000",
        "1:2:3:4",
        "2-",
        "-1",
        "2-1:2:3:4",
        "2-1:300",
        "unlimited",
        "1h",
        "30:",
        "1::00",
        "2-1:",
        "2-1::00",
        "2-1:00:",
    ],
)
def test_time_refuses_what_sbatch_would(value):
    with pytest.raises(ValidationError, match=r"^--time: .* is not valid; expected MIN"):
        validate("time", value)


@pytest.mark.parametrize("value", ["4000", "8G", "500M", "1T", "64K", "8g", "500m", "1t", "2k"])
def test_mem_accepts_numbers_with_an_optional_unit(value):
    r = Resources(mem=value)
    assert r.options() == [("--mem", value)]
    assert r.argv() == [f"--mem={value}"]


@pytest.mark.parametrize("value", ["G", "", "8GB", "8 G", "-8G", "8X", "G8", "8.5G"])
def test_mem_refuses_other_sizes(value):
    with pytest.raises(ValidationError, match=r"^--mem: .* expected a size such as 4000"):
        Resources(mem=value)


@pytest.mark.parametrize("value", ["1", "2", "10", "2-4", "10-20"])
def test_nodes_accepts_counts_and_ranges(value):
    validate("nodes", value)


@pytest.mark.parametrize("value", ["2x", "", "-2", "2-", "a", "2-4-6", "2,4"])
def test_nodes_refuses_the_rest(value):
    with pytest.raises(ValidationError, match=r"^--nodes: .* a node count N or MIN-MAX"):
        validate("nodes", value)


@pytest.mark.parametrize("fieldname", ["ntasks_per_node", "cpus_per_task"])
def test_positive_counts(fieldname):
    flag = fieldname.replace("_", "-")
    for ok in ("1", "9", "10", "128"):
        validate(fieldname, ok)
    for bad in ("0", "01", "", "-1", "1.5", "x"):
        with pytest.raises(ValidationError, match=f"^--{flag}: .* a whole number >= 1"):
            validate(fieldname, bad)


@pytest.mark.parametrize(
    "value", ["8", "0", "mi250x:8", "a100:2", "MI250X:1", "gpu_type:1", "a.b-c:4", "a9:10"]
)
def test_gpus_accepts_counts_and_typed_counts(value):
    validate("gpus_per_node", value)


@pytest.mark.parametrize("value", ["", "mi250x", "mi250x:", ":8", "a:b:8", "8x", "a b:8", "a/b:1"])
def test_gpus_refuses_the_rest(value):
    with pytest.raises(ValidationError, match=r"^--gpus-per-node: .* TYPE:N"):
        validate("gpus_per_node", value)


@pytest.mark.parametrize("value", ["0-15", "1,3,5", "0-99%10", "7", "1-7:2", "0-9,20"])
def test_array_accepts_index_lists(value):
    validate("array", value)


@pytest.mark.parametrize("value", ["", "-1", "a", "%10", "1 3", "1;3", ",1"])
def test_array_refuses_the_rest(value):
    with pytest.raises(ValidationError, match=r"^--array: .* indexes such as"):
        validate("array", value)


@pytest.mark.parametrize(
    "value",
    [
        "afterok:1234",
        "singleton",
        "afterany:1:2,afterok:3",
        "afterok:1?afternotok:2",
        "after:12+5",
        "afterok:1_2",
        "AFTEROK:1",
        "after-ok:9",
    ],
)
def test_dependency_accepts_slurm_lists(value):
    validate("dependency", value)


@pytest.mark.parametrize("value", ["", "afterok 1", "afterok:1;id", "after/ok", "a.b", "a=b"])
def test_dependency_refuses_the_rest(value):
    with pytest.raises(ValidationError, match=r"^--dependency: .* afterok:1234"):
        validate("dependency", value)


@pytest.mark.parametrize("fieldname", ["account", "partition"])
def test_name_lists(fieldname):
    for ok in ("project_465000000", "small-g", "a.b", "a,b", "X9"):
        validate(fieldname, ok)
    for bad in ("", "a b", "a/b", "a:b", "a;b"):
        with pytest.raises(ValidationError, match=f"^--{fieldname}: "):
            validate(fieldname, bad)


@pytest.mark.parametrize("fieldname", ["job_name", "output", "error", "comment"])
def test_free_text_refuses_only_empty_and_control(fieldname):
    flag = fieldname.replace("_", "-")
    validate(fieldname, "any text: with $pecial 'chars' #1")
    with pytest.raises(ValidationError, match=f"^--{flag}: the value is empty$"):
        validate(fieldname, "")
    with pytest.raises(ValidationError, match=f"^--{flag}: value .* control character"):
        validate(fieldname, "a\nb")


def test_control_characters_are_refused_in_every_field():
    for name in OPTIONS:
        with pytest.raises(ValidationError, match="control character"):
            Resources(**{name: "1\n#SBATCH -p evil"})


def test_options_keep_the_sbatch_order_and_skip_unset():
    r = Resources(time="30:00", job_name="j", mem="8G", nodes="2", comment="c")
    assert r.options() == [
        ("--job-name", "j"),
        ("--nodes", "2"),
        ("--mem", "8G"),
        ("--time", "30:00"),
        ("--comment", "c"),
    ]
    assert r.argv() == ["--job-name=j", "--nodes=2", "--mem=8G", "--time=30:00", "--comment=c"]
    assert Resources().options() == []
    assert Resources().argv() == []


def test_every_option_has_its_sbatch_flag():
    assert {k: v[0] for k, v in OPTIONS.items()} == {
        "job_name": "--job-name",
        "account": "--account",
        "partition": "--partition",
        "nodes": "--nodes",
        "ntasks_per_node": "--ntasks-per-node",
        "cpus_per_task": "--cpus-per-task",
        "gpus_per_node": "--gpus-per-node",
        "mem": "--mem",
        "time": "--time",
        "output": "--output",
        "error": "--error",
        "array": "--array",
        "dependency": "--dependency",
        "comment": "--comment",
    }


def test_validate_defaults_accepts_valid_defaults():
    validate_defaults({"time": "1:00:00", "mem": "8G", "nodes": "1"})
    validate_defaults({})


def test_validate_defaults_refuses_unknown_keys_and_names_them():
    with pytest.raises(ConfigError, match=r"^unknown default 'account'; expected one of nodes, "):
        validate_defaults({"account": "p"})
    assert "account" not in DEFAULTABLE
    assert set(DEFAULTABLE) <= set(OPTIONS)


def test_validate_defaults_wraps_the_validation_error():
    with pytest.raises(ConfigError, match=r"^default mem = 'G' is invalid \(--mem: 'G'"):
        validate_defaults({"mem": "G"})


def test_with_defaults_fills_only_unset_and_the_first_layer_wins():
    out = with_defaults(
        {"time": "10:00", "mem": None}, {"mem": "4G", "nodes": "1"}, {"mem": "8G", "time": "1"}
    )
    assert out == {"time": "10:00", "mem": "4G", "nodes": "1"}
    assert with_defaults({"x": None}) == {"x": None}
