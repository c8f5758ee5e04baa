from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurmc.errors import ValidationError
from slurmc.quoting import Quoted, comment, directive, sh, sh_join


def bash_words(script_words: str) -> list[str]:
    """What real bash makes of a line of words."""
    out = subprocess.run(
        ["bash", "-c", f"for w in {script_words}; do printf '%s\\0' \"$w\"; done"],
        capture_output=True,
        check=True,
    ).stdout
    return out.decode("utf-8", "surrogateescape").split("\0")[:-1]


def test_hostile_value_survives_bash(hostile):
    assert bash_words(sh(hostile)) == [hostile]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0")),
        min_size=1,
    )
)
def test_any_words_survive_bash(words):
    assert bash_words(sh_join(words)) == words


def test_quoted_lines_never_contain_a_raw_newline(hostile):
    assert "\n" not in sh(hostile) and "\r" not in sh(hostile)


def test_safe_words_stay_bare():
    assert sh("python") == "python" and sh("/a/b.sif") == "/a/b.sif"
    assert isinstance(sh("x"), Quoted)


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "a\x1bb", "x\u2028y", "\x85"])
def test_directive_refuses_control_characters(value):
    with pytest.raises(ValidationError, match="control character"):
        directive("--job-name", value)


def test_directive_quotes_what_sbatch_would_split():
    assert directive("--job-name", "plain") == "--job-name=plain"
    assert directive("--job-name", "two words") == '--job-name="two words"'
    assert directive("--comment", 'a"b#c\\d') == '--comment="a\\"b\\#c\\\\d"'
    assert directive("--exclusive", None) == "--exclusive"


def test_comment_shows_control_characters_escaped():
    assert comment("a\nb") == "a\\nb"
