"""Quoting for the two places user values land: bash words and #SBATCH lines.

Rendered scripts are bash. A word with no control characters is single-quoted
(POSIX); one with control characters (a newline, a tab, a carriage return...)
is written in bash's ``$'...'`` form so that every line of the script stays a
line the user can read and no value can start a line of its own.

``#SBATCH`` lines are parsed by sbatch itself, not by a shell: there a value is
double-quoted with backslash escapes (sbatch honours ``"``, ``\\`` and treats an
unescaped ``#`` as the start of a comment), and control characters are refused.
"""

from __future__ import annotations

import re

from slurmc.errors import ValidationError

_SAFE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+\Z")
_SAFE_DIRECTIVE = re.compile(r"[A-Za-z0-9_@%+=:,./-]*\Z")
#: Unicode's control characters (general category Cc: C0, DEL and C1, a set Unicode
#: promises never to change) and the line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class Quoted(str):
    """A string that is already safe to print into a script."""

    __slots__ = ()


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def is_utf8(text: str) -> bool:
    """Whether *text* (bytes decoded with surrogateescape, as argv is) is valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printf_b(word: str) -> str:
    """*word* as an argument of ``printf %b`` that prints its bytes: backslashes and
    bytes that are not UTF-8 as ``\\0NNN`` octal escapes, everything else as it is
    (``%b`` reads no ``%`` in its argument). The result is valid UTF-8."""
    out: list[str] = []
    for ch in word:
        if ch == "\\" or not is_utf8(ch):
            out.extend(f"\\0{b:03o}" for b in ch.encode("utf-8", "surrogateescape"))
        else:
            out.append(ch)
    return "".join(out)


def sh(value: object) -> Quoted:
    """Quote *value* as one bash word."""
    if isinstance(value, Quoted):
        return value
    text = str(value)
    if _SAFE_WORD.match(text):
        return Quoted(text)
    if not has_control(text):
        return Quoted("'" + text.replace("'", "'\\''") + "'")
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif has_control(ch):
            out.extend(f"\\x{b:02x}" for b in ch.encode())
        else:
            out.append(ch)
    return Quoted("$'" + "".join(out) + "'")


def sh_join(words: object) -> Quoted:
    """Quote each word of an iterable and join them with spaces."""
    return Quoted(" ".join(sh(w) for w in words))  # type: ignore[attr-defined]


def check_directive_value(field: str, value: str) -> None:
    """Refuse a value that would break out of its ``#SBATCH`` line."""
    if has_control(value):
        bad = next(ch for ch in value if has_control(ch))
        raise ValidationError(
            f"{field}: value {value[:40]!r} holds the control character {bad!r}, "
            "which would inject or cut #SBATCH directives; remove it"
        )


def directive(option: str, value: str | None, field: str | None = None) -> Quoted:
    """Render ``--option=value`` for an ``#SBATCH`` line (validated, quoted)."""
    check_directive_value(field or option, option)
    if value is None:
        return Quoted(option)
    check_directive_value(field or option, value)
    if _SAFE_DIRECTIVE.match(value):
        return Quoted(f"{option}={value}")
    escaped = re.sub(r'(["\\#])', r"\\\1", value)
    return Quoted(f'{option}="{escaped}"')


def comment(value: str) -> Quoted:
    """Text for a ``#`` comment line: control characters are shown escaped."""
    return Quoted("".join(repr(ch)[1:-1] if has_control(ch) else ch for ch in value))
