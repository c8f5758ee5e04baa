from __future__ import annotations

import pytest

from slurmc.errors import InvalidReferenceError
from slurmc.refs import parse_image, parse_reference


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("ubuntu", "docker.io", "library/ubuntu", None, None),
        ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
        (
            "determinedai/environments:rocm-5.0-pytorch-1.10-tf-2.7-rocm-2b7e2a1",
            "docker.io",
            "determinedai/environments",
            "rocm-5.0-pytorch-1.10-tf-2.7-rocm-2b7e2a1",
            None,
        ),
        ("docker://alpine:3", "docker.io", "library/alpine", "3", None),
        ("index.docker.io/library/alpine", "docker.io", "library/alpine", None, None),
        ("nvcr.io/nvidia/pytorch:24.01-py3", "nvcr.io", "nvidia/pytorch", "24.01-py3", None),
        ("nvcr.io#nvidia/pytorch:24.01-py3", "nvcr.io", "nvidia/pytorch", "24.01-py3", None),
        ("127.0.0.1:5000/test/img:v1", "127.0.0.1:5000", "test/img", "v1", None),
        ("localhost/foo", "localhost", "foo", None, None),
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
        ("a/b__c-d.e/f", "docker.io", "a/b__c-d.e/f", None, None),
        (
            "alpine@sha256:" + "a" * 64,
            "docker.io",
            "library/alpine",
            None,
            "sha256:" + "a" * 64,
        ),
        (
            "ghcr.io/o/r:t@sha256:" + "0" * 64,
            "ghcr.io",
            "o/r",
            "t",
            "sha256:" + "0" * 64,
        ),
    ],
)
def test_parses_by_the_distribution_grammar(text, domain, path, tag, digest):
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Ubuntu", "lowercase"),
        ("ubuntu:", "tag"),
        ("ubuntu:-bad", "tag"),
        ("ubuntu:" + "x" * 129, "tag"),
        ("a//b", "path component"),
        ("a/../b", "path component"),
        ("../etc/passwd", "registry host"),
        ("ubuntu@sha256:abc", "digest"),
        ("ubuntu@sha256:" + "a" * 63, "64 hex"),
        ("has space", "whitespace"),
        ("new\nline", "whitespace"),
        ("a#b#c", "'#'"),
        ("bad_host!/x", "path component"),
        ("a/" + "b" * 300, "longer than 255"),
        ("-ubuntu", "path component"),
    ],
)
def test_invalid_references_name_the_reason(text, reason):
    with pytest.raises(InvalidReferenceError) as exc:
        parse_reference(text)
    assert reason in str(exc.value)
    assert "\n" not in str(exc.value)


def test_canonical_and_familiar_forms():
    ref = parse_reference("ubuntu")
    assert ref.canonical() == "docker.io/library/ubuntu:latest"
    assert str(ref) == "ubuntu"
    assert str(parse_reference("nvcr.io#nvidia/cuda:12")) == "nvcr.io/nvidia/cuda:12"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("/shared/containers/x.sif", "path"),
        ("./img.sqsh", "path"),
        ("../img", "path"),
        ("~/img.sif", "path"),
        ("image.sif", "path"),
        ("env.sqfs", "path"),
        ("oci-archive:/shared/containers/cuda", "path"),
        ("docker-archive:/tmp/x.tar", "path"),
        ("library://alpine:3", "uri"),
        ("oras://ghcr.io/o/r:1", "uri"),
        ("ubuntu:22.04", "ref"),
        ("docker://ubuntu", "ref"),
        ("repo/name:v1.sif", "ref"),  # a tag may end in .sif: it is a reference
    ],
)
def test_classifies_paths_uris_and_references(text, kind):
    assert parse_image(text).kind == kind


def test_transport_with_nothing_after_is_refused():
    with pytest.raises(InvalidReferenceError, match="no path after"):
        parse_image("oci-archive:")
    with pytest.raises(InvalidReferenceError, match="nothing after"):
        parse_image("library://")
