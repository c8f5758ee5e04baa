from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmc.errors import InvalidReferenceError
from slurmc.grammar.refs import parse_reference
from slurmc.runtimes import get_runtime

KINDS = ["apptainer", "singularity", "charliecloud", "enroot", "podman"]


def test_determined_layout_is_kept_for_apptainer():
    rt = get_runtime("singularity")
    ref = parse_reference("determinedai/environments:cuda-11.3-pytorch-1.10-tf-2.8-gpu-096d730")
    assert rt.cache_relpath(ref) == (
        "determinedai/environments:cuda-11.3-pytorch-1.10-tf-2.8-gpu-096d730"
    )


@pytest.mark.parametrize(
    ("text", "rel"),
    [
        ("ubuntu", "library/ubuntu:latest"),
        ("nvcr.io/nvidia/pytorch:24.01", "nvcr.io/nvidia/pytorch:24.01"),
        ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:1"),
        ("localhost:5000", "library/localhost:5000"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("docker.io/foo.bar/baz:1", "docker.io/foo.bar/baz:1"),
        ("foo.bar/baz:1", "foo.bar/baz:1"),
        ("a@sha256:" + "b" * 64, "library/a@sha256:" + "b" * 64),
        ("a:t@sha256:" + "b" * 64, "library/a:t@sha256:" + "b" * 64),
    ],
)
def test_cache_names(text, rel):
    assert get_runtime("apptainer").cache_relpath(parse_reference(text)) == rel


def test_suffix_per_runtime():
    ref = parse_reference("a/b:c")
    assert get_runtime("charliecloud").cache_relpath(ref) == "a/b:c.sqfs"
    assert get_runtime("enroot").cache_relpath(ref) == "a/b:c.sqsh"
    assert get_runtime("podman").cache_relpath(ref) == "a/b+c.oci.tar"  # podman: no ':'
    assert get_runtime("podman").cache_relpath(parse_reference("h:5/a:b")) == "h+5/a+b.oci.tar"


def test_collapsing_names_stay_distinct():
    rt = get_runtime("apptainer")
    assert rt.cache_relpath(parse_reference("a/b-c")) != rt.cache_relpath(parse_reference("a-b/c"))


def test_too_long_component_is_refused():
    ref = parse_reference("a/" + "b" * 200 + ":" + "t" * 100)
    with pytest.raises(InvalidReferenceError, match="longer than 255 bytes"):
        get_runtime("apptainer").cache_relpath(ref)


_component = st.from_regex(r"[a-z0-9]{1,4}(?:[_-][a-z0-9]{1,3}){0,2}", fullmatch=True)
_refs = st.builds(
    lambda domain, parts, tag: (
        (f"{domain}/" if domain else "") + "/".join(parts) + (f":{tag}" if tag else "")
    ),
    st.sampled_from(["", "docker.io", "localhost", "localhost:5000", "ghcr.io", "a.b:1"]),
    st.lists(_component, min_size=1, max_size=3),
    st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True)),
)


@given(st.lists(_refs, min_size=2, max_size=6, unique=True))
def test_mapping_is_injective_and_stays_under_the_root(texts):
    rt = get_runtime("apptainer")
    refs = {parse_reference(t).canonical(): parse_reference(t) for t in texts}
    names = {rt.cache_relpath(r) for r in refs.values()}
    assert len(names) == len(refs)  # distinct images -> distinct files
    root = "/cache/root"
    for n in names:
        full = os.path.normpath(os.path.join(root, n))
        assert full.startswith(root + "/") and ".." not in n.split("/")


@pytest.mark.parametrize("kind", KINDS)
def test_gpu_flags(kind):
    rt = get_runtime(kind)
    assert rt.gpu_flags("none") == []
    if kind in ("apptainer", "singularity"):
        assert rt.gpu_flags("amd") == ["--rocm"] and rt.gpu_flags("nvidia") == ["--nv"]


@pytest.mark.parametrize(
    ("kind", "binds", "args"),
    [
        ("singularity", ["/a", "/b:/c:ro"], ["-B", "/a,/b:/c:ro"]),
        # SingularityCE's -B is CSV (a '"' fails the job): --mount, CSV-quoted
        (
            "singularity",
            ["/a", '/d/dq"x:/mnt:ro'],
            ["-B", "/a", "--mount", 'type=bind,"source=/d/dq""x",destination=/mnt,ro'],
        ),
        ("apptainer", ['/d/dq"x:/mnt'], ["-B", '/d/dq"x:/mnt']),  # a StringArray carries it
        # both split -B paths at '^'
        ("apptainer", ["/d/c^x"], ["--mount", "type=bind,source=/d/c^x,destination=/d/c^x"]),
        (
            "singularity",
            ["/v/a^b.sqsh:/user-software:image-src=/"],
            ["--mount", "type=bind,source=/v/a^b.sqsh,destination=/user-software,image-src=/"],
        ),
        (
            "apptainer",
            ["/d/c^x:/m:rw", "/e"],
            ["-B", "/e", "--mount", "type=bind,source=/d/c^x,destination=/m"],
        ),
    ],
)
def test_bind_args_per_flavour(kind, binds, args):
    assert get_runtime(kind).bind_args(binds) == args


def test_flavours_and_what_they_carry():
    assert get_runtime("singularity").flavour == "singularityce"  # type: ignore[attr-defined]
    assert get_runtime("apptainer").flavour == "apptainer"  # type: ignore[attr-defined]
    for kind in KINDS:
        rt = get_runtime(kind)
        is_apptainer = kind in ("apptainer", "singularity")
        # podman's -e NAME=VALUE is exact; the others' own ways are not, or leak to the host
        assert rt.env_as_arguments is (kind != "podman")
        # podman's OCI config is JSON: command words are escaped, other values refused
        assert rt.carries_non_utf8 is not (is_apptainer or kind == "podman")
        assert rt.escapes_non_utf8_argv is (kind == "podman")
