"""The cache's file layout: reference <-> file name, listing a root, recording a use."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from slurmc.cache import layout
from slurmc.cache.layout import (
    DIR_MODE,
    Entry,
    display,
    make_dirs,
    ref_from_relpath,
    scan,
    touch_used,
)
from slurmc.errors import InvalidReferenceError
from slurmc.grammar.refs import ImageRef, parse_reference
from slurmc.runtimes import get_runtime

D64 = "sha256:" + "a" * 64
RUNTIMES = ["apptainer", "charliecloud", "enroot", "podman"]
SUFFIX = {"apptainer": "", "charliecloud": ".sqfs", "enroot": ".sqsh", "podman": ".oci.tar"}

# reference -> file name under a cache root (apptainer: Determined's layout, no suffix)
MAPPING = [
    ("ubuntu", "library/ubuntu:latest"),
    ("ubuntu:22.04", "library/ubuntu:22.04"),
    ("docker.io/library/ubuntu:22.04", "library/ubuntu:22.04"),
    ("determinedai/environments:cuda-11.3", "determinedai/environments:cuda-11.3"),
    ("ghcr.io/org/img:v1", "ghcr.io/org/img:v1"),
    ("localhost:5000/x:1", "localhost:5000/x:1"),
    ("localhost/x:1", "localhost/x:1"),
    ("docker.io/localhost/x:1", "docker.io/localhost/x:1"),
    ("org/a.b:1", "org/a.b:1"),
    ("org/localhost:1", "org/localhost:1"),
    (f"ubuntu@{D64}", f"library/ubuntu@{D64}"),
    (f"ubuntu:22.04@{D64}", f"library/ubuntu:22.04@{D64}"),
]


@pytest.mark.parametrize("kind", RUNTIMES)
@pytest.mark.parametrize(("text", "relpath"), MAPPING)
def test_cache_relpath_and_back(kind, text, relpath):
    rt = get_runtime(kind)
    ref = parse_reference(text)
    want = relpath + SUFFIX[kind]
    if kind == "podman":
        want = want.replace(":", "+")
    assert rt.cache_relpath(ref) == want
    assert rt.relpath_to_name(want[: len(want) - len(SUFFIX[kind])]) == relpath
    back = ref_from_relpath(want, rt)
    assert back is not None and back.canonical() == ref.canonical()


def test_mapping_is_injective_for_lookalikes():
    rt = get_runtime("apptainer")
    refs = ["localhost/x:1", "docker.io/localhost/x:1", "x:1", "library/x:1", "ghcr.io/x:1"]
    names = {rt.cache_relpath(parse_reference(r)) for r in refs}
    assert len(names) == 4  # x:1 and library/x:1 are the same image


@pytest.mark.parametrize("kind", RUNTIMES)
def test_a_component_longer_than_a_file_name_is_refused(kind):
    rt = get_runtime(kind)
    ok = parse_reference("a" * 200 + ":" + "t" * (254 - 200 - len(SUFFIX[kind])))
    assert len(rt.cache_relpath(ok).split("/")[-1].encode()) == 255
    long = parse_reference("a" * 200 + ":" + "t" * (255 - 200 - len(SUFFIX[kind])))
    with pytest.raises(InvalidReferenceError, match="longer than 255 bytes"):
        rt.cache_relpath(long)


def test_podman_refuses_a_digest_algorithm_with_plus():
    # the parser refuses algorithms other than sha256/384/512 (distribution's table),
    # so such a reference can only be made by hand; podman's guard still holds
    with pytest.raises(InvalidReferenceError, match="not supported"):
        parse_reference("x@sha256+b64:" + "a" * 64)
    from slurmc.grammar.refs import ImageRef

    ref = ImageRef("docker.io", "library/x", None, "sha256+b64:" + "a" * 64)
    with pytest.raises(InvalidReferenceError, match="with '\\+' cannot be cached"):
        get_runtime("podman").cache_relpath(ref)
    assert get_runtime("apptainer").cache_relpath(ref) == "library/x@sha256+b64:" + "a" * 64


@pytest.mark.parametrize(
    ("kind", "relpath"),
    [
        ("apptainer", "ubuntu:22.04"),  # would be library/ubuntu:22.04
        ("apptainer", "library/ubuntu"),  # no tag
        ("apptainer", "library/UPPER:1"),  # not a reference
        ("apptainer", "a:b/c"),
        ("apptainer", "README"),
        ("charliecloud", "library/ubuntu:22.04"),  # no suffix
        ("charliecloud", "library/ubuntu:22.04.sqsh"),
        ("podman", "library/ubuntu:22.04.oci.tar"),  # ':' is '+' for podman
    ],
)
def test_files_that_are_not_cached_images(kind, relpath):
    assert ref_from_relpath(relpath, get_runtime(kind)) is None


def test_digest_only_file_names_are_images():
    rt = get_runtime("charliecloud")
    assert ref_from_relpath(f"library/x@{D64}.sqfs", rt) == parse_reference(f"x@{D64}")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ubuntu", "ubuntu:latest"),
        ("library/ubuntu:22.04", "ubuntu:22.04"),
        ("ghcr.io/org/img:v1", "ghcr.io/org/img:v1"),
        ("org/img", "org/img:latest"),
        (f"ubuntu@{D64}", f"ubuntu@{D64}"),
        (f"ubuntu:1@{D64}", f"ubuntu:1@{D64}"),
        ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
    ],
)
def test_display(text, shown):
    assert display(parse_reference(text)) == shown


def test_entry_as_dict():
    e = Entry("/c", "library/x:1", parse_reference("x:1"), 42, 1000.0, 2000.0)
    assert e.path == "/c/library/x:1"
    assert e.as_dict(now=1000.0 + 86400 * 1.5 + 400) == {
        "reference": "x:1",
        "path": "/c/library/x:1",
        "size": 42,
        "created": 1000.0,
        "last_used": 2000.0,
        "age_days": 1.5,
        "digest": None,  # no provenance file beside it
        "sha256": None,
        "pulled_by": None,
    }
    assert e.as_dict(now=1000.0 + 86400 / 3)["age_days"] == 0.33
    before = time.time()
    age = e.as_dict()["age_days"]
    assert (before - 1000.0) / 86400 - 0.01 <= age <= (time.time() - 1000.0) / 86400 + 0.01


def _put(root: Path, rel: str, data: bytes = b"img") -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_scan_lists_images_and_skips_everything_else(tmp_path):
    root = tmp_path / "root"
    _put(root, "library/ubuntu:22.04.sqfs", b"12345")
    _put(root, "ghcr.io/org/img:v1.sqfs")
    _put(root, "library/ubuntu:22.04.sqfs.tmp")  # stray
    _put(root, "README")
    _put(root, ".lock-library-ubuntu:1.sqfs")  # hidden: slurmc's own
    _put(root, ".hidden/x:1.sqfs")
    (root / "dir:1.sqfs").mkdir()  # a directory named like an image
    _put(root, "dir:1.sqfs/inner:2.sqfs")  # not an image path by the mapping
    other = tmp_path / "other"
    _put(other, "library/a:1.sqfs")
    os.symlink(other / "library", root / "linked")  # a symlinked directory is not followed
    os.symlink(other, root / "library" / "b")
    entries = sorted(scan(str(root), get_runtime("charliecloud")), key=lambda e: e.relpath)
    assert [e.relpath for e in entries] == ["ghcr.io/org/img:v1.sqfs", "library/ubuntu:22.04.sqfs"]
    e = entries[1]
    assert e.root == str(root)
    assert e.ref == parse_reference("ubuntu:22.04")
    assert e.size == 5
    st = os.stat(root / e.relpath)
    assert (e.mtime, e.atime) == (st.st_mtime, st.st_atime)


@pytest.mark.parametrize("what", ["missing", "file"])
def test_scan_of_a_root_that_is_not_a_directory_is_empty(tmp_path, what):
    root = tmp_path / "root"
    if what == "file":
        root.write_bytes(b"")
    assert list(scan(str(root), get_runtime("apptainer"))) == []


def test_scan_skips_a_file_that_vanishes_before_its_stat(tmp_path, monkeypatch):
    root = tmp_path / "root"
    _put(root, "library/a:1")
    _put(root, "library/b:1")
    real = os.scandir

    class Gone:
        def __init__(self, entry):
            self._e = entry
            self.name = entry.name

        def is_dir(self, follow_symlinks=True):
            return self._e.is_dir(follow_symlinks=follow_symlinks)

        def stat(self, follow_symlinks=True):
            if self.name == "a:1":
                raise FileNotFoundError(self.name)
            return self._e.stat()

    class It:
        def __init__(self, path):
            self._it = real(path)

        def __enter__(self):
            return self

        def __iter__(self):
            return (Gone(e) for e in self._it)

        def __exit__(self, *exc):
            self._it.close()

    monkeypatch.setattr(layout.os, "scandir", It)
    assert [e.relpath for e in scan(str(root), get_runtime("apptainer"))] == ["library/b:1"]


def test_make_dirs_creates_setgid_group_writable_parents(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "root" / "a" / "b"
        make_dirs(str(tmp_path / "root"), str(target))
    finally:
        os.umask(old)
    for d in (tmp_path / "root", tmp_path / "root" / "a", target):
        assert d.stat().st_mode & 0o7777 == DIR_MODE
    make_dirs(str(tmp_path / "root"), str(target))  # again: nothing to do, no error
    assert target.is_dir()


def test_touch_used_updates_atime_and_keeps_mtime(tmp_path):
    f = tmp_path / "img"
    f.write_bytes(b"x")
    os.utime(f, ns=(1_000_000_000, 2_000_000_123))
    before = time.time_ns()
    touch_used(str(f))
    st = os.stat(f)
    assert st.st_mtime_ns == 2_000_000_123
    assert st.st_atime_ns >= before - 10_000_000


def test_touch_used_of_a_missing_file_is_quiet(tmp_path):
    touch_used(str(tmp_path / "gone"))


def test_touch_used_falls_back_to_a_read_when_utime_is_not_allowed(tmp_path, monkeypatch):
    f = tmp_path / "img"
    f.write_bytes(b"x")
    opened = []
    real_open = open

    def deny(*a, **kw):
        raise PermissionError("not yours")

    class Reads:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def read(self, n=-1):
            opened.append(("read", n))
            return self.fh.read(n)

    def spy(path, mode="r", *a, **kw):
        opened.append((path, mode))
        return Reads(real_open(path, mode, *a, **kw))

    monkeypatch.setattr(layout.os, "utime", deny)
    monkeypatch.setattr("builtins.open", spy)
    touch_used(str(f))
    assert opened == [(str(f), "rb"), ("read", 1)]  # a one-byte read: atime moves


def test_modes_let_the_group_share_the_cache():
    assert DIR_MODE == 0o2775  # setgid, group-writable
    assert layout.FILE_MODE == 0o644  # readable by all: a shared image is never 0600


@pytest.mark.parametrize("path", ["a/../b", "a//b", "./a", "../a"])
@pytest.mark.parametrize("kind", RUNTIMES)
def test_the_mapping_refuses_dot_and_empty_components_even_if_the_grammar_let_them_by(kind, path):
    ref = ImageRef(domain="x.io", path=path, tag="1", digest=None)
    with pytest.raises(InvalidReferenceError, match="cannot be mapped to a cache file name"):
        get_runtime(kind).cache_relpath(ref)
