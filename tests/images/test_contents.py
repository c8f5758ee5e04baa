"""Discovery of OS, Python, conda and pip over an abstract file tree (MemoryTree),
plus the directory reader and the pattern rules every reader shares."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slurmc.images.contents import PATTERNS, discover
from slurmc.images.metadata import (
    activated_env,
    canonical_name,
    parse_conda_record,
    parse_metadata_headers,
    parse_os_release,
    parse_with_conda_sh,
)
from slurmc.images.tree import DirectoryTree, Link, MemoryTree, compile_patterns, path_match

SP = "opt/conda/envs/torch/lib/python3.12/site-packages"


def conda_json(name: str, version: str, build: str, channel: str) -> bytes:
    return json.dumps(
        {"name": name, "version": version, "build": build, "channel": channel, "files": []}
    ).encode()


@pytest.fixture
def lumi_like() -> dict:
    """A tree shaped like a LUMI base image, with the usual links and oddities."""
    return {
        "etc/os-release": Link("../usr/lib/os-release"),
        "usr/lib/os-release": b'PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\nID="sles"\n'
        b'VERSION_ID="15.5"\n',
        "usr/bin/python3": Link("python3.6"),
        "usr/bin/python3.6": b"\x7fELF",
        "usr/bin/python3-config": b"#!/bin/sh\n",
        "usr/lib/python3.6/site-packages/rpm-4.14.3-py3.6.egg-info": b"Metadata-Version: 1.1\n"
        b"Name: rpm\nVersion: 4.14.3\n",
        ".singularity.d/env/10-docker2singularity.sh": b"export PATH=/usr/bin\n",
        ".singularity.d/env/90-environment.sh": b"#!/bin/sh\n"
        b'export WITH_CONDA="source /opt/conda/bin/activate torch"  # activate\n',
        ".singularity.d/labels.json": b'{"maintainer": "lumi"}',
        ".singularity.d/runscript": b"#!/bin/sh\n",
        "opt/conda/bin/python3": Link("python3.12"),
        "opt/conda/bin/python3.12": b"\x7fELF",
        "opt/conda/bin/conda": b"#!/opt/conda/bin/python\n",
        "opt/conda/conda-meta/conda-24.1.0-py312_0.json": conda_json(
            "conda", "24.1.0", "py312_0", "https://conda.anaconda.org/conda-forge/linux-64"
        ),
        "opt/conda/conda-meta/history": b"",
        "opt/conda/envs/torch/bin/python3.12": b"\x7fELF",
        "opt/conda/envs/torch/conda-meta/history": b"",
        "opt/conda/envs/torch/conda-meta/pytorch-2.4.1-py3.12_rocm6.1_0.json": conda_json(
            "pytorch", "2.4.1", "py3.12_rocm6.1_0", "https://conda.anaconda.org/pytorch/linux-64"
        ),
        "opt/conda/envs/torch/conda-meta/numpy-2.0.1-py312_0.json": conda_json(
            "numpy", "2.0.1", "py312_0", "https://repo.anaconda.com/pkgs/main/linux-64"
        ),
        "opt/conda/envs/torch/conda-meta/broken.json": b"{not json",
        f"{SP}/torch-2.4.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: torch\n"
        b"Version: 2.4.1\n\nName: not-the-name\n",
        f"{SP}/torch-2.4.1.dist-info/INSTALLER": b"conda\n",
        f"{SP}/Flash_Attn-2.6.3.dist-info/METADATA": b"Name: flash_attn\nVersion: 2.6.3\n",
        f"{SP}/Flash_Attn-2.6.3.dist-info/INSTALLER": b"pip\n",
        f"{SP}/nometa-0.1.dist-info/RECORD": b"",  # no METADATA: pip skips it too
        f"{SP}/old_pkg-1.0-py3.12.egg-info/PKG-INFO": b"Name: old-pkg\nVersion: 1.0\n",
        f"{SP}/torch/__init__.py": b"",
        "opt/venv/pyvenv.cfg": b"home = /usr/bin\n",
        "opt/venv/bin/python3": Link("/usr/bin/python3"),
        "opt/venv/lib/python3.6/site-packages/h5py-3.11.0.dist-info/METADATA": b"Name: h5py\n"
        b"Version: 3.11.0\n",
    }


def test_discovers_os_pythons_envs_and_packages(lumi_like):
    c = discover(MemoryTree(lumi_like))
    assert c.os_name == "SUSE Linux Enterprise Server 15 SP5"
    assert c.os_release["ID"] == "sles" and c.os_release["VERSION_ID"] == "15.5"
    assert [(p.path, p.version, p.target) for p in c.pythons] == [
        ("/opt/conda/bin/python3", "3.12", "python3.12"),
        ("/opt/conda/bin/python3.12", "3.12", None),
        ("/opt/conda/envs/torch/bin/python3.12", "3.12", None),
        ("/opt/venv/bin/python3", None, "/usr/bin/python3"),
        ("/usr/bin/python3", "3.6", "python3.6"),
        ("/usr/bin/python3.6", "3.6", None),
    ]
    envs = {e.prefix: e for e in c.environments}
    assert [e.prefix for e in c.environments] == [
        "/opt/conda",
        "/opt/conda/envs/torch",
        "/opt/venv",
        "/usr",
    ]
    base, torch, venv, system = (
        envs[p] for p in ("/opt/conda", "/opt/conda/envs/torch", "/opt/venv", "/usr")
    )
    assert (base.kind, base.name) == ("conda", "base")
    assert [(p.name, p.version, p.channel) for p in base.conda_packages] == [
        ("conda", "24.1.0", "conda-forge")
    ]
    assert (torch.kind, torch.name, torch.activated_by_with_conda) == ("conda", "torch", True)
    assert [(p.name, p.version, p.build, p.channel) for p in torch.conda_packages] == [
        ("numpy", "2.0.1", "py312_0", "pkgs/main"),
        ("pytorch", "2.4.1", "py3.12_rocm6.1_0", "pytorch"),
    ]
    assert [(p.name, p.version, p.installer) for p in torch.pip_packages] == [
        ("flash_attn", "2.6.3", "pip"),
        ("old-pkg", "1.0", ""),
        ("torch", "2.4.1", "conda"),
    ]
    assert {p.location for p in torch.pip_packages} == {"/" + SP}
    assert (venv.kind, [p.name for p in venv.pip_packages]) == ("venv", ["h5py"])
    assert system.kind == "system"
    assert [(p.name, p.version) for p in system.pip_packages] == [("rpm", "4.14.3")]
    assert c.with_conda == "source /opt/conda/bin/activate torch"
    assert c.with_conda_source == "/.singularity.d/env/90-environment.sh"
    assert c.singularity["labels"] == {"maintainer": "lumi"}
    assert c.singularity["runscript"] == "/.singularity.d/runscript"
    assert any("broken.json" in w for w in c.warnings)


def test_to_dict_round_trips_through_json(lumi_like):
    out = json.loads(json.dumps(discover(MemoryTree(lumi_like)).to_dict()))
    assert out["os"]["name"].startswith("SUSE")
    assert out["with_conda"]["value"].endswith("activate torch")
    names = [e["name"] for e in out["environments"]]
    assert names == ["base", "torch", "/opt/venv", "/usr"]


def test_a_plain_image_has_no_conda_and_no_with_conda():
    c = discover(MemoryTree({"usr/bin/python3.11": b"", "etc/os-release": b"ID=debian\n"}))
    assert c.with_conda is None
    assert [(e.prefix, e.kind) for e in c.environments] == [("/usr", "system")]
    assert c.os_name == "" and c.os_release == {"ID": "debian"}


def test_with_conda_from_charliecloud_and_from_the_format():
    ch = discover(MemoryTree({"ch/environment": b"PATH=/bin\nWITH_CONDA='conda activate x'\n"}))
    assert (ch.with_conda, ch.with_conda_source) == ("conda activate x", "/ch/environment")
    oci = discover(MemoryTree({"etc/hostname": b""}), {"WITH_CONDA": "source /a/activate b"})
    assert (oci.with_conda, oci.with_conda_source) == ("source /a/activate b", "image config Env")


def test_empty_tree():
    c = discover(MemoryTree({}))
    assert (c.environments, c.pythons, c.os_release) == ([], [], {})


def test_symlink_loops_and_escapes_do_not_hang():
    tree = MemoryTree(
        {
            "etc/os-release": Link("os-release"),
            "usr/lib/os-release": Link("/../../../../etc/passwd"),
        }
    )
    assert discover(tree).os_release == {}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            "export WITH_CONDA='source /opt/miniconda3/bin/activate pytorch'",
            "source /opt/miniconda3/bin/activate pytorch",
        ),
        ('WITH_CONDA="conda activate base"', "conda activate base"),
        ("export WITH_CONDA=a\nexport WITH_CONDA=b", "b"),
        ("# WITH_CONDA=commented", None),
        ("export OTHER=x", None),
        ("export WITH_CONDA='unbalanced", None),
    ],
)
def test_parse_with_conda_sh(text, value):
    assert parse_with_conda_sh(text) == value


@pytest.mark.parametrize(
    ("value", "env"),
    [
        ("source /opt/miniconda3/bin/activate pytorch", "pytorch"),
        ("source /opt/miniconda3/bin/activate", "base"),
        ("conda activate myenv", "myenv"),
        ("echo hi", None),
    ],
)
def test_activated_env(value, env):
    assert activated_env(value) == env


def test_small_parsers():
    assert parse_os_release('NAME="Debian GNU/Linux"\n# c\nVERSION_ID=12\nbad\n') == {
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
    }
    assert parse_metadata_headers("Name: a\nVersion: 1\n Summary cont\n\nName: b\n") == {
        "name": "a",
        "version": "1",
    }
    assert parse_conda_record(b"[]", "x") is None
    assert parse_conda_record(b"{", "x") is None
    assert canonical_name("Flash_Attn.x") == "flash-attn-x"


def test_pattern_rules_match_squashfs_tools():
    rx = compile_patterns(["opt/*/bin/python3*", ".singularity.d/env/*", "a[!b]c/[xy]?"])
    assert rx.match("opt/conda/bin/python3.12")
    assert not rx.match("opt/.hidden/bin/python3")  # a leading * does not match a dot
    assert not rx.match("opt/a/b/bin/python3")  # * does not cross /
    assert rx.match(".singularity.d/env/90-environment.sh")
    assert rx.match("adc/x1") and not rx.match("abc/x1")
    for path in ("opt/conda/bin/python3.12", "opt/.hidden/bin/python3", "usr/bin/python3"):
        assert bool(compile_patterns(PATTERNS).match(path)) == any(
            path_match(path, p) for p in PATTERNS
        )


def test_directory_tree_reads_a_sandbox_and_never_follows_links(tmp_path: Path, lumi_like):
    root = tmp_path / "sandbox"
    for rel, value in lumi_like.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, Link):
            os.symlink(value.target, p)
        else:
            p.write_bytes(value)
    (root / "etc" / "shadow-link").symlink_to("/etc/shadow")
    tree = DirectoryTree(str(root))
    assert tree.read(["etc/shadow-link", "no/such"]) == {}
    assert discover(tree).to_dict() == discover(MemoryTree(lumi_like)).to_dict()
