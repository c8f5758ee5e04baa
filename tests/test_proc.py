"""The one door to subprocess (slurmc/proc.py), with real commands."""

from __future__ import annotations

import os

from slurmc import proc


def test_bytes_that_are_not_utf8_go_through_the_door_unchanged(tmp_path):
    """A batch script naming a Latin-1 file is piped to sbatch: no UnicodeEncodeError."""
    name = os.fsdecode(b"caf\xe9 \xff.txt")
    r = proc.run(["cat"], input=f"cat {name}\n")
    assert r.stdout.encode("utf-8", "surrogateescape") == b"cat caf\xe9 \xff.txt\n"
    r = proc.run(["printf", "%s", name])  # and in argv and output
    assert r.stdout == name
