"""slurmc.usecases.imagefacts: an image's static facts, read once per file identity."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slurmc.usecases import imagefacts, inspect


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time the image itself is read (slurmc.usecases.inspect.inspect_image)."""
    from types import SimpleNamespace

    from slurmc.images import ImageFormatError

    calls: list[str] = []
    answers = {
        "conda": ("source /opt/miniconda3/bin/activate pytorch", ["ch/environment"]),
        "plain": (None, []),
    }

    def fake(path: str, given: str | None = None) -> SimpleNamespace:
        calls.append(path)
        stem = Path(path).stem
        if stem not in answers:
            raise ImageFormatError(f"{path}: not an image")
        conda, files = answers[stem]
        return SimpleNamespace(contents=SimpleNamespace(with_conda=conda, env_files=files))

    monkeypatch.setattr(inspect, "inspect_image", fake)
    return calls


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}


def image(tmp_path: Path, name: str, data: bytes = b"hsqs" + b"\0" * 100) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_read_once_then_remembered(tmp_path, env, reads):
    img = image(tmp_path, "conda.sqfs")
    first = imagefacts.with_conda(env, img)
    second = imagefacts.with_conda(env, img)
    assert first == second == (True, "source /opt/miniconda3/bin/activate pytorch")
    assert reads == [img]  # the second answer came from the cache


def test_none_is_remembered_too(tmp_path, env, reads):
    img = image(tmp_path, "plain.sqfs")
    assert imagefacts.with_conda(env, img) == (True, None)
    assert imagefacts.with_conda(env, img) == (True, None)
    assert len(reads) == 1


def test_an_unreadable_image_is_asked_again(tmp_path, env, reads):
    img = image(tmp_path, "broken.sqfs")
    assert imagefacts.with_conda(env, img) == (False, None)
    assert imagefacts.with_conda(env, img) == (False, None)
    assert len(reads) == 2  # not remembered: it may be readable once its pull finishes
    assert not imagefacts.facts_dir(env).exists() or not list(imagefacts.facts_dir(env).iterdir())


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: Path(p).write_bytes(b"hsqs" + b"\1" * 100), id="rewritten"),
        pytest.param(lambda p: os.utime(p, ns=(1, 1)), id="mtime"),
        pytest.param(lambda p: os.chmod(p, 0o600), id="ctime"),
        pytest.param(lambda p: Path(p).write_bytes(b"hsqs"), id="size"),
    ],
)
def test_a_changed_file_is_read_again(tmp_path, env, reads, change):
    img = image(tmp_path, "conda.sqfs")
    imagefacts.with_conda(env, img)
    change(img)
    imagefacts.with_conda(env, img)
    assert len(reads) == 2


def test_a_replaced_file_is_read_again(tmp_path, env, reads):
    img = image(tmp_path, "conda.sqfs")
    imagefacts.with_conda(env, img)
    new = image(tmp_path, "new", b"hsqs" + b"\0" * 100)  # same bytes, another inode
    os.replace(new, img)
    imagefacts.with_conda(env, img)
    assert len(reads) == 2


def test_symlinks_share_the_real_file_facts(tmp_path, env, reads):
    img = image(tmp_path, "conda.sqfs")
    link = tmp_path / "link.sqfs"
    link.symlink_to(img)
    imagefacts.with_conda(env, img)
    assert imagefacts.with_conda(env, str(link)) == (
        True,
        "source /opt/miniconda3/bin/activate pytorch",
    )
    assert len(reads) == 1


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"facts": 1}', b"\xff\xfe", b"[" * 100_000, b'{"realpath": 1}'],
    ids=["empty", "truncated", "list", "facts-not-dict", "not-utf8", "deep", "other-file"],
)
def test_a_damaged_cache_file_is_a_miss_not_an_error(tmp_path, env, reads, content):
    img = image(tmp_path, "conda.sqfs")
    imagefacts.with_conda(env, img)
    (cached,) = imagefacts.facts_dir(env).iterdir()
    cached.write_bytes(content)
    assert imagefacts.with_conda(env, img)[1] == "source /opt/miniconda3/bin/activate pytorch"
    assert len(reads) == 2
    assert imagefacts.with_conda(env, img)[0] is True  # and remembered again
    assert len(reads) == 2


def test_facts_of_another_identity_with_the_same_name_are_not_used(tmp_path, env, reads):
    """A file whose recorded identity differs (a hash collision, a copied cache) is a miss."""
    img = image(tmp_path, "conda.sqfs")
    ident = imagefacts.identity(img)
    assert ident is not None
    imagefacts.remember(env, {**ident, "inode": ident["inode"] + 1}, with_conda="evil")
    (cached,) = imagefacts.facts_dir(env).iterdir()
    cached.rename(imagefacts._file(env, ident))
    assert imagefacts.with_conda(env, img)[1] == "source /opt/miniconda3/bin/activate pytorch"


def test_private_files(tmp_path, env, reads):
    img = image(tmp_path, "conda.sqfs")
    imagefacts.with_conda(env, img)
    d = imagefacts.facts_dir(env)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    (f,) = d.iterdir()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary left


def test_an_unwritable_cache_is_not_an_error(tmp_path, reads):
    img = image(tmp_path, "conda.sqfs")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {"XDG_CACHE_HOME": str(blocker)}  # a file where the directory should be
    assert imagefacts.with_conda(env, img)[0] is True
    assert imagefacts.with_conda(env, img)[0] is True
    assert len(reads) == 2


def test_directories_and_missing_paths_are_not_remembered(tmp_path, env, reads):
    d = tmp_path / "conda.sqfs"
    d.mkdir()
    imagefacts.with_conda(env, str(d))
    imagefacts.with_conda(env, str(tmp_path / "missing.sqfs"))
    assert imagefacts.identity(str(d)) is None
    assert imagefacts.identity(str(tmp_path / "missing.sqfs")) is None
    assert not imagefacts.facts_dir(env).exists()


def test_ch_environment_is_a_fact_too(tmp_path, env, reads):
    conda, plain = image(tmp_path, "conda.sqfs"), image(tmp_path, "plain.sqfs")
    assert imagefacts.facts(env, conda) == {
        "with_conda": "source /opt/miniconda3/bin/activate pytorch",
        "ch_environment": True,
    }
    assert imagefacts.facts(env, plain) == {"with_conda": None, "ch_environment": False}
    assert imagefacts.facts(env, plain)["ch_environment"] is False
    assert len(reads) == 2


def test_an_older_cache_entry_without_every_fact_is_read_again(tmp_path, env, reads):
    img = image(tmp_path, "conda.sqfs")
    ident = imagefacts.identity(img)
    assert ident is not None
    imagefacts.remember(env, ident, with_conda="old")  # written by an earlier slurmc
    assert imagefacts.facts(env, img)["ch_environment"] is True
    assert len(reads) == 1
