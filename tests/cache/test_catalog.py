from __future__ import annotations

import pytest

from slurmc.cache.catalog import list_catalogs, parse_name, pick, version_key
from slurmc.errors import ImageNotFoundError

# LUMI's table (seed lumi-containers.md), with and without the -dockerhash- part
NAMES = [
    "lumi-mpi4py-rocm-6.2.0-python-3.12-mpi4py-3.1.6-dockerhash-f049c8bd4669.sif",
    "lumi-pytorch-rocm-5.7.3-python-3.12-pytorch-v2.2.2-dockerhash-b0bb3b4ea779.sif",
    "lumi-pytorch-rocm-6.2.0-python-3.10-pytorch-v2.3.0-dockerhash-187f41102477.sif",
    "lumi-pytorch-rocm-6.0.3-python-3.12-pytorch-v2.3.1.sif",
    "lumi-pytorch-rocm-6.1.3-python-3.12-pytorch-v2.4.1-dockerhash-04f2083a6cb0.sif",
    "lumi-pytorch-rocm-6.2.1-python-3.12-pytorch-20240918-vllm-4075b35.sif",
    "README.txt",
    "lumi-broken.sif",
]


@pytest.fixture
def catalog(tmp_path):
    for n in NAMES:
        (tmp_path / n).write_bytes(b"")
    return tmp_path


def test_parses_both_forms():
    a = parse_name(NAMES[0])
    assert (a.package, a.rocm, a.python, a.version, a.dockerhash) == (
        "mpi4py",
        "6.2.0",
        "3.12",
        "3.1.6",
        "f049c8bd4669",
    )
    b = parse_name(NAMES[3])
    assert (b.package, b.rocm, b.python, b.version, b.dockerhash) == (
        "pytorch",
        "6.0.3",
        "3.12",
        "v2.3.1",
        None,
    )
    c = parse_name(NAMES[5])
    assert c.version == "20240918-vllm-4075b35" and c.dockerhash is None
    assert parse_name("README.txt") is None and parse_name("lumi-broken.sif") is None


def test_lists_and_picks_newest(catalog):
    assert len(list_catalogs([str(catalog)])) == 6
    assert pick([str(catalog)], "pytorch", "v2.3.1").path.endswith("pytorch-v2.3.1.sif")
    assert pick([str(catalog)], "pytorch", "2.3.1").path.endswith("pytorch-v2.3.1.sif")
    assert pick([str(catalog)], "pytorch", rocm="6.2", python="3.10").version == "v2.3.0"
    assert pick([str(catalog)], "mpi4py").version == "3.1.6"
    with pytest.raises(ImageNotFoundError, match="slurmc images"):
        pick([str(catalog)], "tensorflow")


def test_version_order():
    assert version_key("v2.10.0") > version_key("v2.9.9") > version_key("2.3")
