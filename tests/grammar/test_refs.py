from __future__ import annotations

import pytest

from slurmc.errors import InvalidReferenceError
from slurmc.grammar.refs import parse_image, parse_reference


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


H64 = "a" * 64


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("Registry.Example.COM/x", "Registry.Example.COM", "x"),
        ("REG/x", "REG", "x"),  # upper case makes a first component a host
        ("X.io/x", "X.io", "x"),
        ("a.B/x", "a.B", "x"),
        ("aB-C.dE/x", "aB-C.dE", "x"),
        ("my-registry.local:5000/a/b", "my-registry.local:5000", "a/b"),
        ("a-b-c.d/x", "a-b-c.d", "x"),
        ("a1.b2:443/x", "a1.b2:443", "x"),
        ("[::1]:5000/x", "[::1]:5000", "x"),
        ("[::1]/x", "[::1]", "x"),
        ("[fe80::a:B]:1/x", "[fe80::a:B]:1", "x"),
        ("registry-1.docker.io/library/x", "docker.io", "library/x"),
        ("index.docker.io/x", "docker.io", "library/x"),
        ("docker.io/org/x", "docker.io", "org/x"),
        ("localhost/a/b", "localhost", "a/b"),
        ("a/b", "docker.io", "a/b"),
    ],
)
def test_registry_hosts(text, domain, path):
    ref = parse_reference(text)
    assert (ref.domain, ref.path) == (domain, path)


@pytest.mark.parametrize(
    "text",
    [
        "[]:5000/x",
        "ex.com!/x",
        "-a.com/x",
        "a-.com/x",
        "a..com/x",
        "ex.com:50a/x",
        "ex.com:/x",
        "[::1/x",
    ],
)
def test_bad_registry_hosts_are_named(text):
    with pytest.raises(InvalidReferenceError, match="is not a registry host"):
        parse_reference(text)


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + H64,
        "sha256:" + "A" * 64,
        "sha384:" + "b" * 96,
        "sha512:" + "c" * 128,
    ],
)
def test_digest_algorithms_and_lengths(digest):
    assert parse_reference(f"x@{digest}").digest == digest


@pytest.mark.parametrize(
    "digest",
    [
        "blake3:" + "d" * 32,
        "sha256+b64u:" + H64,
        "a.b-c_d+e:" + "0" * 40,
        "x9:" + "1" * 33,
        "A9+B.c:" + "e" * 32,
        "Sha256:" + "f" * 32,
    ],
)
def test_other_algorithms_are_refused_as_distribution_refuses_them(digest):
    """Well-formed but not sha256/384/512: ErrDigestUnsupported in distribution's table."""
    with pytest.raises(InvalidReferenceError, match="is not supported"):
        parse_reference(f"x@{digest}")


@pytest.mark.parametrize(
    ("digest", "reason"),
    [
        ("sha256:" + "a" * 65, "64 hex digits, not 65"),
        ("sha384:" + "b" * 64, "96 hex digits, not 64"),
        ("sha384:" + "b" * 97, "96 hex digits, not 97"),
        ("sha512:" + "c" * 127, "128 hex digits, not 127"),
        ("blake3:" + "d" * 31, "is not ALGORITHM:HEX"),
        ("1sha:" + H64, "is not ALGORITHM:HEX"),
        ("sha-:" + H64, "is not ALGORITHM:HEX"),
        ("sha..x:" + H64, "is not ALGORITHM:HEX"),
        ("sha256:" + "g" * 64, "is not ALGORITHM:HEX"),
        ("sha256", "is not ALGORITHM:HEX"),
        (":" + H64, "is not ALGORITHM:HEX"),
    ],
)
def test_bad_digests_name_the_reason(digest, reason):
    with pytest.raises(InvalidReferenceError, match=reason):
        parse_reference(f"x@{digest}")


def test_empty_brackets_are_not_a_host():
    with pytest.raises(InvalidReferenceError, match=r"path component '\[\]'"):
        parse_reference("[]/x")


def test_names_of_exactly_255_characters_and_not_256():
    """distribution's limit: the repository path (without the domain) is at most 255."""
    ok = "a/" + "b" * 253
    assert len(parse_reference(ok).path) == 255
    with pytest.raises(InvalidReferenceError, match="name longer than 255 characters"):
        parse_reference("a/" + "b" * 254)
    one = "c" * 247  # library/ccc... is 255
    assert parse_reference(one).path == "library/" + one
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        parse_reference("c" * 248)


@pytest.mark.parametrize("tag", ["v1", "_x", "X", "1", "a.b-c_D", "t" * 128, "0" * 128])
def test_tags(tag):
    assert parse_reference(f"x:{tag}").tag == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "t" * 129, "a+b", "a/b:c!"])
def test_bad_tags(tag):
    with pytest.raises(InvalidReferenceError, match=r"tag .* must match"):
        parse_reference(f"x:{tag}")


@pytest.mark.parametrize("text", [":v1", "@sha256:" + H64, ":v1@sha256:" + H64])
def test_no_repository_name(text):
    with pytest.raises(InvalidReferenceError, match="no repository name"):
        parse_reference(text)


@pytest.mark.parametrize(
    "component", ["a__b", "a-b", "a--b", "a.b", "a_b", "a1", "1a", "a.b_c-d__e"]
)
def test_path_component_separators(component):
    assert parse_reference(f"o/{component}").path == f"o/{component}"


@pytest.mark.parametrize(
    "component", ["a___b", "a..b", "a-", "a.-b", "_a", "A", "a_", "a._b", ".a", ""]
)
def test_bad_path_components(component):
    with pytest.raises(InvalidReferenceError, match="path component"):
        parse_reference(f"o/{component}/x")


@pytest.mark.parametrize("text", ["", "\x7f", "a\tb", "a\x00"])
def test_empty_and_control_references(text):
    with pytest.raises(InvalidReferenceError, match=r"empty|whitespace or a control"):
        parse_reference(text)


def test_familiar_and_canonical_forms_with_digests():
    d = "sha256:" + H64
    r = parse_reference(f"alpine@{d}")
    assert r.effective_tag is None
    assert r.canonical() == f"docker.io/library/alpine@{d}"
    assert str(r) == f"alpine@{d}"
    r = parse_reference(f"ghcr.io/o/r:t@{d}")
    assert str(r) == f"ghcr.io/o/r:t@{d}"
    assert r.canonical() == f"ghcr.io/o/r:t@{d}"
    assert str(parse_reference("docker.io/library/ubuntu:1")) == "ubuntu:1"
    assert str(parse_reference("docker.io/org/x")) == "org/x"
    assert parse_reference("org/x").familiar_path == "org/x"
    assert parse_reference("ghcr.io/library/x").familiar_path == "library/x"
    assert parse_reference("x:1").effective_tag == "1"


@pytest.mark.parametrize(
    "text",
    ["x.oci", "x.tar", "x.simg", "x.squashfs", "x.sqsh", "x.sqfs", "x.sif", ".", "..", "~u/x"],
)
def test_local_paths(text):
    spec = parse_image(text)
    assert (spec.kind, spec.path, spec.ref) == ("path", text, None)


@pytest.mark.parametrize("text", ["x.sif:1", "a/b.sif@sha256:" + H64, "x.oci.d", "oci"])
def test_names_that_only_look_like_files_are_references(text):
    assert parse_image(text).kind == "ref"


def test_path_transports_keep_the_transport():
    spec = parse_image("oci:/a/b")
    assert (spec.kind, spec.path, spec.transport) == ("path", "/a/b", "oci:")
    spec = parse_image("https://example/x.sif")
    assert (spec.kind, spec.transport, spec.ref) == ("uri", "https://", None)
    with pytest.raises(InvalidReferenceError, match="nothing after library://"):
        parse_image("library://")


@pytest.mark.parametrize(
    ("text", "catalog"),
    [
        ("catalog:pytorch", ("pytorch", None)),
        ("catalog:pytorch:2.3.1", ("pytorch", "2.3.1")),
        ("catalog:pytorch:v2", ("pytorch", "v2")),
        ("catalog:pytorch:1.0-RC1", ("pytorch", "1.0-RC1")),
        ("catalog:mpi4py:V2_1.0+rocm-6", ("mpi4py", "V2_1.0+rocm-6")),
        ("catalog:0a.b_c-d:", ("0a.b_c-d", None)),
    ],
)
def test_catalog_images(text, catalog):
    spec = parse_image(text)
    assert (spec.kind, spec.catalog) == ("catalog", catalog)


@pytest.mark.parametrize(
    "text", ["catalog:", "catalog:Py", "catalog:-x", "catalog:x:-1", "catalog:x:1 2", "catalog:a/b"]
)
def test_bad_catalog_images(text):
    with pytest.raises(InvalidReferenceError, match="write catalog:PACKAGE"):
        parse_image(text)


@pytest.mark.parametrize("text", ["a\x7fb", "a\nb", "\x1f"])
def test_parse_image_refuses_control_characters(text):
    with pytest.raises(InvalidReferenceError, match="contains a control character"):
        parse_image(text)


def test_a_too_long_name_is_shown_cut_at_60_characters():
    text = "a/" + "b" * 58 + "cd" + "e" * 200
    with pytest.raises(InvalidReferenceError) as exc:
        parse_reference(text)
    assert f"{text[:60]!r}...: name longer" in str(exc.value)
