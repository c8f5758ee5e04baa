"""slurmc's references against distribution/reference's own test tables, and Enroot's
own parser (issue 13). The tables are in tests/grammar/refs_oracle_data.py, transcribed
from upstream.

slurmc normalises as Docker does (ParseNormalizedNamed): no domain means docker.io and
a one-component docker.io name gets ``library/``. reference.Parse does not normalise,
so its expectations are compared through that normalisation.
"""

from __future__ import annotations

import pytest

from slurmc.errors import InvalidReferenceError
from slurmc.grammar.refs import DEFAULT_DOMAIN, is_domain_like, parse_reference
from slurmc.runtimes import get_runtime
from slurmc.runtimes.base import pull_name
from slurmc.runtimes.enroot import enroot_uri
from tests.grammar.refs_oracle_data import (
    ENROOT_URIS,
    INVALID_NAMES,
    REFERENCE_PARSE,
    REPOSITORY_INFO,
    VALID_NAMES,
)

#: Where slurmc differs from the upstream table on purpose, and why.
DELIBERATE = {
    # upstream's test binary registers only sha256 (it imports crypto/sha256), so a
    # sha512 digest is "unsupported" there; Docker and the registries accept sha512,
    # and so does slurmc (with its 128 hex digits)
    "validname@sha512:" + "f" * 128: "accepted",
}


def _id(case: tuple) -> str:
    return repr(case[0])[:60]


@pytest.mark.parametrize("case", REFERENCE_PARSE, ids=_id)
def test_reference_parse_table(case):
    text, err, domain, repository, tag, digest = case
    if DELIBERATE.get(text) == "accepted":
        assert parse_reference(text).digest == text.split("@", 1)[1]
        return
    if err is not None:
        with pytest.raises(InvalidReferenceError):
            parse_reference(text)
        return
    ref = parse_reference(text)
    assert (ref.tag or "") == tag
    assert (ref.digest or "") == digest
    if domain and not is_domain_like(domain):
        # reference.Parse takes any first component as a domain ("foo/bar": "foo");
        # Docker's normalisation, which slurmc follows, only a host-like one
        domain = ""
    if domain:
        assert ref.domain == domain and f"{ref.domain}/{ref.path}" == repository
    else:  # no domain: Docker's normalisation
        assert ref.domain == DEFAULT_DOMAIN
        assert ref.path == (repository if "/" in repository else f"library/{repository}")


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name):
    parse_reference(name)


@pytest.mark.parametrize("name", INVALID_NAMES, ids=lambda n: n[:60])
def test_invalid_names(name):
    with pytest.raises(InvalidReferenceError):
        parse_reference(name)


def _repo_info_cases():
    for remote, familiar, full, ambiguous, domain in REPOSITORY_INFO:
        for text in filter(None, (familiar, full, ambiguous)):
            yield text, remote, familiar, full, domain


@pytest.mark.parametrize(("text", "remote", "familiar", "full", "domain"), list(_repo_info_cases()))
def test_repository_info_table(text, remote, familiar, full, domain):
    ref = parse_reference(text)
    assert ref.domain == domain
    assert ref.path == remote
    assert f"{ref.domain}/{ref.path}" == full
    assert ref.familiar_name == familiar


# ---- the bugs issue 13 found, each pinned ------------------------------------------


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        # Enroot: the part before '#' is always the registry, one word or not
        ("docker://myregistry#image", "myregistry", "image"),
        ("gitlab#group/project/image:v1", "gitlab", "group/project/image"),
        ("nvcr.io#nvidia/pytorch:24.01-py3", "nvcr.io", "nvidia/pytorch"),
        ("docker://registry.example.com:5000#a/b", "registry.example.com:5000", "a/b"),
        # library/ stays in nested official paths: another repository than foo/bar
        ("library/foo/bar", "docker.io", "library/foo/bar"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ("docker.io/foo.bar/baz", "docker.io", "foo.bar/baz"),
        ("docker.io/localhost/x", "docker.io", "localhost/x"),
    ],
)
def test_registry_and_path(text, domain, path):
    ref = parse_reference(text)
    assert (ref.domain, ref.path) == (domain, path)


@pytest.mark.parametrize(
    ("text", "pulled"),
    [
        ("library/foo/bar", "library/foo/bar:latest"),
        ("docker.io/library/foo/bar", "library/foo/bar:latest"),
        ("docker.io/foo.bar/baz", "docker.io/foo.bar/baz:latest"),
        ("docker.io/localhost/x:1", "docker.io/localhost/x:1"),
        ("ubuntu", "ubuntu:latest"),
        ("library/ubuntu:22.04", "ubuntu:22.04"),
    ],
)
def test_the_name_a_pull_uses_is_the_same_repository(text, pulled):
    ref = parse_reference(text)
    assert pull_name(ref) == pulled
    again = parse_reference(pulled)  # what a Docker-style tool reads back
    assert (again.domain, again.path) == (ref.domain, ref.path)


def test_a_one_word_registry_cannot_be_named_to_docker_style_tools():
    ref = parse_reference("myregistry#image")
    with pytest.raises(InvalidReferenceError, match="only Enroot can name it"):
        pull_name(ref)


@pytest.mark.parametrize("runtime", ["apptainer", "charliecloud", "enroot", "podman"])
def test_cache_names_keep_a_one_word_registry_apart(runtime):
    rt = get_runtime(runtime)
    names = {
        rt.cache_relpath(parse_reference(t))
        for t in ("myregistry#image", "myregistry/image", "docker.io/myregistry/image")
    }
    assert len(names) == 2  # the last two are the same repository; the first is not


@pytest.mark.parametrize(
    "text",
    [
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "docker://1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "[2001:db8:3:4::192.0.2.33]:5000/debian",
        "ubuntu:tägg",
        "ubuntu:\uff11\uff12",  # full-width digits
        "ubuntu:ab٣",
    ],
)
def test_refused(text):
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


def test_enroot_user_at_registry_says_what_is_not_supported():
    with pytest.raises(InvalidReferenceError, match="USER@REGISTRY#IMAGE form is not supported"):
        parse_reference("docker://alice@nvcr.io#nvidia/pytorch:24.01-py3")


@pytest.mark.parametrize("case", ENROOT_URIS, ids=lambda c: c[0][:60])
def test_enroot_grammar(case):
    """What Enroot itself reads from each URI (registry, image, tag, or the digest it
    uses in place of the tag) is what slurmc reads."""
    uri, registry, image, tag_or_digest = case
    ref = parse_reference(uri)
    assert ("registry-1.docker.io" if ref.domain == DEFAULT_DOMAIN else ref.domain) == registry
    assert ref.path == image
    assert (ref.digest or ref.effective_tag) == tag_or_digest
    # and the URI slurmc gives enroot names the same image again
    again = parse_reference(enroot_uri(ref))
    assert (again.domain, again.path, again.digest) == (ref.domain, ref.path, ref.digest)
