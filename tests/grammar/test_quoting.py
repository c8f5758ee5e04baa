from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurmc.errors import ValidationError
from slurmc.grammar.quoting import Quoted, comment, directive, sh, sh_join


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


SAFE = "AZaz09_@%+=:,./-"


@pytest.mark.parametrize("ch", list(SAFE))
def test_each_safe_character_stays_bare(ch):
    assert sh(f"x{ch}y") == f"x{ch}y"
    assert directive("--x", f"x{ch}y") == f"--x=x{ch}y"


@pytest.mark.parametrize("ch", list(" '\"$`\\!*?[]{}()<>|&;#~^"))
def test_shell_special_characters_are_quoted(ch):
    assert sh(f"x{ch}y") != f"x{ch}y"
    assert bash_words(sh(f"x{ch}y")) == [f"x{ch}y"]


def test_sh_of_an_empty_value_is_an_empty_word():
    assert sh("") == "''"
    assert bash_words(sh("")) == [""]


def test_sh_leaves_an_already_quoted_value_alone():
    q = sh("it's")
    assert sh(q) is q
    assert sh(Quoted("$HOME")) == "$HOME"
    assert sh_join(["a b", Quoted("$X"), 3]) == "'a b' $X 3"


def test_sh_writes_control_characters_as_utf8_hex_escapes():
    assert sh("a\nb'c\\d") == "$'a\\x0ab\\'c\\\\d'"
    assert sh("\x85") == "$'\\xc2\\x85'"
    assert sh("\u2029") == "$'\\xe2\\x80\\xa9'"
    assert sh("\x7f\x1f\x00x") == "$'\\x7f\\x1f\\x00x'"


@pytest.mark.parametrize("ch", ["\u2028", "\u2029", "\x80", "\x85", "\x9f", "\x00", "\x1f", "\x7f"])
def test_line_and_paragraph_separators_and_c1_controls_are_controls(ch):
    with pytest.raises(ValidationError, match="control character"):
        directive("--comment", f"a{ch}b")
    assert comment(f"a{ch}b") == "a" + repr(ch)[1:-1] + "b"
    assert ch not in sh(f"a{ch}b")


@pytest.mark.parametrize("ch", ["\xa0", "\u00e9", "\u2027", "\u202a", "~", " "])
def test_other_characters_are_not_controls(ch):
    assert comment(f"a{ch}b") == f"a{ch}b"
    assert sh(f"a{ch}b").startswith("'")


def test_directive_names_the_field_in_its_error():
    with pytest.raises(ValidationError, match=r"^--my-field: value 'a\\nb' holds the control"):
        directive("--x", "a\nb", field="--my-field")
    with pytest.raises(ValidationError, match=r"^--x: value"):
        directive("--x", "a\nb")


def test_directive_refuses_a_control_character_in_the_option_name():
    with pytest.raises(ValidationError, match=r"^--f: value '--x\\ny' holds the control"):
        directive("--x\ny", "v", field="--f")
    with pytest.raises(ValidationError, match="control character"):
        directive("--x\ny", None)


def test_directive_with_an_empty_value():
    assert directive("--x", "") == "--x="


def test_the_error_shows_the_first_40_characters():
    with pytest.raises(ValidationError) as exc:
        directive("--x", "a" * 39 + "b" + "c" * 10 + "\n")
    assert f"value {'a' * 39 + 'b'!r} holds" in str(exc.value)


def test_control_characters_are_unicodes_own_cc_set():
    """has_control refuses exactly Unicode's Cc characters (checked against the
    unicodedata module's table for every code point) and the line/paragraph separators."""
    import sys
    import unicodedata

    from slurmc.grammar.quoting import has_control

    for point in range(sys.maxunicode + 1):
        char = chr(point)
        expected = unicodedata.category(char) == "Cc" or char in "\u2028\u2029"
        assert has_control(f"a{char}b") is expected, hex(point)
