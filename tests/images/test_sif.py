"""The SIF reader against real SIF files written by the reference library (sylabs/sif).

Ground truth: the fixtures' README.md for one-group.sif; for the others, the bytes
as the format lays them out (checked by hand with xxd, against the test double's
independent parser in tests/doubles/sif.py, and, for OCI objects, against the
SHA-256 of the object's own data).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
from pathlib import Path

import pytest
from sif_reference import MISSING, SIF_IMAGES

from slurmc.images import ImageFormatError, sif
from slurmc.images.squashfs import SquashfsTree

# sylabs/sif's own reference images, from Debian's golang-github-sylabs-sif-dev
FIXTURES = SIF_IMAGES
GO_ZERO_TIME = -62135596800  # time.Time{}.Unix(): the fixtures are deterministic
ZERO_ID = "00000000-0000-0000-0000-000000000000"
BLOB_DIGEST = "sha256:a88b15e95042f7d5a1327c03c57e10bdc1cf5f5efc2968fc73c12b6f5b00c731"
INDEX_DIGEST = "sha256:2dc692f0dcaf7e3cb30db2d5d61004e4319f13db84331b65f066481c0f94cffb"

# (id, data type, group, link, link is a group, offset, size, size with padding, extra)
RAW_386 = (
    1,
    "FS",
    1,
    0,
    False,
    32768,
    4,
    596,
    {"fs_type": "Raw", "part_type": "System", "arch": "386"},
)
SQUASH_386 = (
    2,
    "FS",
    1,
    0,
    False,
    36864,
    4096,
    8188,
    {"fs_type": "Squashfs", "part_type": "*System", "arch": "386"},
)
EXPECTED = {
    "empty.sif": dict(arch="unknown", id=ZERO_ID, free=48, data_size=0, objects=[]),
    "empty-id.sif": dict(
        arch="unknown", id="3fa802cc-358b-45e3-bcc0-69dc7a45f9f8", free=48, data_size=0, objects=[]
    ),
    "one-group.sif": dict(
        arch="386", id=ZERO_ID, free=46, data_size=8784, objects=[RAW_386, SQUASH_386]
    ),
    "one-group-signed.sif": dict(
        arch="386",
        id=ZERO_ID,
        free=45,
        data_size=9838,
        objects=[
            RAW_386,
            SQUASH_386,
            (
                3,
                "Signature",
                0,
                1,
                True,
                40960,
                1054,
                1054,
                {"hash_type": "SHA256", "fingerprint": "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"},
            ),
        ],
    ),
    "two-groups.sif": dict(
        arch="386",
        id=ZERO_ID,
        free=45,
        data_size=270928,
        objects=[
            RAW_386,
            SQUASH_386,
            (
                3,
                "FS",
                2,
                0,
                False,
                40960,
                262144,
                262144,
                {"fs_type": "Ext3", "part_type": "System", "arch": "amd64"},
            ),
        ],
    ),
    "one-object-generic-json.sif": dict(
        arch="unknown",
        id=ZERO_ID,
        free=47,
        data_size=2,
        objects=[(1, "JSON.Generic", 1, 0, False, 32176, 2, 2, {})],
    ),
    "one-group-signed-pgp.sif": dict(
        arch="386",
        id=ZERO_ID,
        free=45,
        data_size=9832,
        objects=[
            RAW_386,
            SQUASH_386,
            (
                3,
                "Signature",
                0,
                1,
                True,
                40960,
                1048,
                1048,
                {"hash_type": "SHA256", "fingerprint": "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"},
            ),
        ],
    ),
    "one-object-oci-blob.sif": dict(
        arch="unknown",
        id=ZERO_ID,
        free=47,
        data_size=847,
        objects=[
            (
                1,
                "OCI.Blob",
                1,
                0,
                False,
                32176,
                847,
                847,
                {"digest": BLOB_DIGEST},
            )
        ],
    ),
    "one-object-oci-root-index.sif": dict(
        arch="unknown",
        id=ZERO_ID,
        free=47,
        data_size=706,
        objects=[
            (
                1,
                "OCI.RootIndex",
                1,
                0,
                False,
                32176,
                706,
                706,
                {"digest": INDEX_DIGEST},
            )
        ],
    ),
    "one-object-sbom.sif": dict(
        arch="unknown",
        id=ZERO_ID,
        free=47,
        data_size=454,
        objects=[(1, "SBOM", 1, 0, False, 32176, 454, 454, {"sbom_format": "cyclonedx-json"})],
    ),
}


#: the hand-checked images this package version has (Debian 12 ships sif 2.8.3, Debian 13
#: sif 2.21.0: one-group-signed.sif became one-group-signed-pgp.sif, and OCI-SIF objects
#: came); tests/images/test_sif_golden.py checks every image against siftool's outputs
PRESENT = sorted(n for n in EXPECTED if (FIXTURES / n).is_file())
SIGNED = next(
    (n for n in ("one-group-signed.sif", "one-group-signed-pgp.sif") if n in PRESENT),
    "one-group-signed.sif",
)
OCI_OBJECTS = [
    n for n in ("one-object-oci-blob.sif", "one-object-oci-root-index.sif") if n in PRESENT
]


def _package_version() -> tuple[int, ...]:
    import subprocess

    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "golang-github-sylabs-sif-dev"],
        capture_output=True,
        text=True,
    ).stdout
    return tuple(int(x) for x in re.findall(r"\d+", out.split("-")[0])[:3])


def test_the_hand_checked_images_are_there():
    assert FIXTURES.is_dir(), MISSING
    assert len(PRESENT) >= 7 and SIGNED in PRESENT, PRESENT


def test_one_group_matches_the_readme():
    image = sif.read_sif(str(FIXTURES / "one-group.sif"))
    h = image.header
    assert (h.version, h.arch, h.descriptors_total, h.descriptors_free) == ("01", "386", 48, 46)
    assert (h.descriptors_offset, h.data_offset) == (4096, 32176)
    one, two = image.descriptors
    assert (one.id, one.group_id, one.extra["fs_type"], one.extra["part_type"]) == (
        1,
        1,
        "Raw",
        "System",
    )
    assert (one.offset, one.offset + one.size, one.extra["arch"]) == (32768, 32772, "386")
    assert (two.id, two.group_id, two.extra["fs_type"], two.extra["part_type"]) == (
        2,
        1,
        "Squashfs",
        "*System",
    )
    assert (two.offset, two.offset + two.size) == (36864, 40960)
    assert image.primary_partition == two


@pytest.mark.parametrize("name", PRESENT or ["(no reference images)"])
def test_header_and_every_descriptor(name):
    want = EXPECTED[name]
    path = FIXTURES / name
    image = sif.read_sif(str(path))
    h = image.header
    assert h.launch_script == ""
    assert h.version == "01"
    assert h.arch == want["arch"]
    assert h.id == want["id"]
    assert (h.created_at, h.modified_at) == (GO_ZERO_TIME, GO_ZERO_TIME)
    assert (h.descriptors_total, h.descriptors_free) == (48, want["free"])
    assert (h.descriptors_offset, h.descriptors_size) == (4096, 48 * 585)
    assert (h.data_offset, h.data_size) == (32176, want["data_size"])
    got = [
        (
            d.id,
            d.data_type,
            d.group_id,
            d.linked_id,
            d.link_is_group,
            d.offset,
            d.size,
            d.size_with_padding,
            {k: v for k, v in d.extra.items() if not k.endswith("_code")},
        )
        for d in image.descriptors
    ]
    assert got == want["objects"]
    assert len(image.descriptors) == h.descriptors_total - h.descriptors_free
    for d in image.descriptors:
        assert d.created_at == d.modified_at == GO_ZERO_TIME
        assert d.offset + d.size <= path.stat().st_size


def test_names_and_object_data():
    generic = sif.read_sif(str(FIXTURES / "one-object-generic-json.sif"))
    (d,) = generic.descriptors
    assert d.name == "data.json"
    assert sif.read_object(generic.path, d) == b"{}"
    sbom = sif.read_sif(str(FIXTURES / "one-object-sbom.sif"))
    assert b'"bomFormat": "CycloneDX"' in sif.read_object(sbom.path, sbom.descriptors[0])


def test_oci_digest_is_the_sha256_of_the_object():
    """OCI-SIF objects (sif >= 2.10): the digest is the sha256 of the object's data."""
    if not OCI_OBJECTS:
        assert _package_version() < (2, 10), "this package should have OCI-SIF images"
    for name in OCI_OBJECTS:
        image = sif.read_sif(str(FIXTURES / name))
        (d,) = image.descriptors
        data = sif.read_object(image.path, d)
        assert d.extra["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert image.primary_partition is None


def test_no_primary_partition_without_one():
    assert sif.read_sif(str(FIXTURES / "one-object-sbom.sif")).primary_partition is None
    assert sif.read_sif(str(FIXTURES / "empty.sif")).primary_partition is None


def test_to_dict_is_plain_data():
    out = sif.read_sif(str(FIXTURES / SIGNED)).to_dict()
    assert out["header"]["descriptors_free"] == 45
    sig = out["descriptors"][2]
    assert sig["data_type"] == "Signature" and sig["link_is_group"] is True
    assert "part_type_code" not in out["descriptors"][1]


def test_primary_partition_sits_at_an_offset_and_is_read_there():
    image = sif.read_sif(str(FIXTURES / "one-group.sif"))
    prim = image.primary_partition
    assert prim is not None
    tree = SquashfsTree(image.path, prim.offset, prim.size)
    assert [e.path for e in tree.find(["*"])] == ["hello.txt"]
    assert tree.read(["hello.txt"]) == {"hello.txt": b"Hello from Sylabs!\n"}
    assert tree.superblock.compression == "gzip"


# ------------------------------------------------------------------ damaged files


def _copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copyfile(FIXTURES / name, dst)
    return dst


@pytest.mark.parametrize("name", PRESENT or ["(no reference images)"])
@pytest.mark.parametrize("keep", [0, 20, 41, 100, 127, 4096, 4096 + 585 + 3, 32000])
def test_truncated_copies_are_one_clear_error(tmp_path, name, keep):
    path = _copy(tmp_path, name)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ImageFormatError) as exc:
        sif.read_sif(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    assert ("truncated" in msg) or ("not a SIF file" in msg)


@pytest.mark.parametrize("name", [n for n in PRESENT if EXPECTED[n]["objects"]])
def test_file_cut_inside_its_last_object(tmp_path, name):
    path = _copy(tmp_path, name)
    end = max(d.offset + d.size for d in sif.read_sif(str(path)).descriptors)
    path.write_bytes(path.read_bytes()[: end - 1])
    with pytest.raises(ImageFormatError, match="truncated SIF file: object"):
        sif.read_sif(str(path))


def _patched(tmp_path: Path, offset: int, data: bytes) -> Path:
    path = _copy(tmp_path, "one-group.sif")
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("offset", "data", "message"),
    [
        (32, b"NOT_MAGIC\x00", "not a SIF file"),
        (42, b"99\x00", "SIF version '99' is not supported"),
        (72 + 16, struct.pack("<q", -1), "damaged SIF header"),  # descriptors total
        (72 + 8, struct.pack("<q", 49), "damaged SIF header"),  # free > total
        (72 + 32, struct.pack("<q", 100), "damaged SIF header"),  # table size
        (72 + 24, struct.pack("<q", 10**12), "truncated SIF file"),  # table offset
        (4096 + 4, b"\x07", "'used' flag is 7"),
        (4096 + 17, struct.pack("<q", 10**9), "truncated SIF file: object 1"),
        (4096 + 25, struct.pack("<q", -5), "truncated SIF file: object 1"),
    ],
)
def test_damaged_headers_and_descriptors(tmp_path, offset, data, message):
    path = _patched(tmp_path, offset, data)
    with pytest.raises(ImageFormatError, match=message):
        sif.read_sif(str(path))


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.sif"
    junk.write_bytes(bytes(range(256)) * 200)
    with pytest.raises(ImageFormatError, match="not a SIF file"):
        sif.read_sif(str(junk))
    with pytest.raises(ImageFormatError, match="cannot read"):
        sif.read_sif(str(tmp_path / "missing.sif"))


def test_partition_cut_short_is_a_squashfs_error(tmp_path):
    path = _copy(tmp_path, "one-group.sif")
    prim = sif.read_sif(str(path)).primary_partition
    assert prim is not None
    with pytest.raises(ImageFormatError, match="truncated SquashFS"):
        SquashfsTree(str(path), prim.offset, 100)
    with pytest.raises(ImageFormatError, match="not a SquashFS"):
        SquashfsTree(str(path), 32768)  # the Raw partition
