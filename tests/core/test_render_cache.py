"""Compiled templates are kept between runs (Jinja2's bytecode cache), safely."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slurmc.core import render as render_mod
from slurmc.errors import TemplateError
from slurmc.grammar.quoting import Quoted


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    render_mod._environment.cache_clear()  # a new process, as far as the cache can tell
    yield home
    render_mod._environment.cache_clear()


def cached_files(home: Path) -> list[Path]:
    d = home / "slurmc" / f"jinja2-{render_mod.__version__}"
    return sorted(d.iterdir()) if d.is_dir() else []


def templates(tmp_path: Path, **texts: str) -> list[str]:
    d = tmp_path / "tpl"
    d.mkdir(exist_ok=True)
    for name, text in texts.items():
        (d / f"{name}.j2").write_text(text)
    return [str(d)]


def test_compiled_once_then_loaded(tmp_path, cache_home, monkeypatch):
    path = templates(tmp_path, a="echo {{ word|q }}\n")
    assert render_mod.render("a.j2", path, word="x y") == "echo 'x y'\n"
    (bucket,) = cached_files(cache_home)
    assert stat.S_IMODE(bucket.parent.stat().st_mode) == 0o700
    # a second process loads the bucket instead of compiling
    render_mod._environment.cache_clear()
    import jinja2

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(jinja2.Environment, "compile", no_compile)
    assert render_mod.render("a.j2", path, word="it's") == "echo 'it'\\''s'\n"


def test_an_edited_template_is_compiled_again(tmp_path, cache_home):
    path = templates(tmp_path, a="echo {{ word|q }}\n")
    render_mod.render("a.j2", path, word="x")
    render_mod._environment.cache_clear()
    templates(tmp_path, a="printf %s {{ word|q }}\n")
    assert render_mod.render("a.j2", path, word="x") == "printf %s x\n"


def test_the_unquoted_value_guard_holds_on_a_cache_hit(tmp_path, cache_home):
    path = templates(tmp_path, a="echo {{ word }}\n")
    for _ in range(2):  # compiled, then loaded from the cache
        with pytest.raises(TemplateError, match="unquoted value"):
            render_mod.render("a.j2", path, word="; rm -rf ~")
        render_mod._environment.cache_clear()
    assert cached_files(cache_home)
    assert render_mod.render("a.j2", path, word=Quoted("ok")) == "echo ok\n"


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o702])
def test_a_directory_others_can_write_or_read_is_not_used(tmp_path, cache_home, mode):
    d = cache_home / "slurmc" / f"jinja2-{render_mod.__version__}"
    d.mkdir(parents=True)
    os.chmod(d, mode)
    path = templates(tmp_path, a="echo {{ word|q }}\n")
    assert render_mod.render("a.j2", path, word="x") == "echo x\n"
    assert cached_files(cache_home) == []  # nothing written, nothing loaded from there


def test_a_symlinked_cache_directory_is_not_used(tmp_path, cache_home):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (cache_home / "slurmc").mkdir(parents=True)
    (cache_home / "slurmc" / f"jinja2-{render_mod.__version__}").symlink_to(elsewhere)
    path = templates(tmp_path, a="echo {{ word|q }}\n")
    assert render_mod.render("a.j2", path, word="x") == "echo x\n"
    assert list(elsewhere.iterdir()) == []


def test_an_unusable_cache_location_still_renders(tmp_path, cache_home):
    cache_home.write_text("a file where the directory should be")
    path = templates(tmp_path, a="echo {{ word|q }}\n")
    assert render_mod.render("a.j2", path, word="x") == "echo x\n"
