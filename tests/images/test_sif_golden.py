"""`slurmc inspect --json` against siftool's own golden outputs (an oracle nobody here wrote).

Debian's golang-github-sylabs-sif-dev (installed by `scripts/devcluster install`) ships
sylabs/sif's reference images (test/images/*.sif) and the outputs its `siftool header`,
`siftool list` and `siftool info` must print for them
(internal/app/siftool/testdata/TestApp_{Header,List,Info}/*.golden). For every image, the
header and every descriptor slurmc reads are rendered the way siftool renders them
(internal/app/siftool/info.go: readableSize, writeHeader, writeList, writeInfo) and
compared field by field with the golden text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from sif_reference import MISSING, SIF_IMAGES, SIFTOOL_GOLDEN
from typer.testing import CliRunner

from slurmc.cli.app import app


def siftool_cases(test: str) -> list[tuple[str, str, int | None]]:
    """(golden name, image, descriptor id) of one of siftool's table tests, read from the
    package's own internal/app/siftool/info_test.go, so the oracle follows the package
    version (Debian 12 ships sif 2.8.3 with 17 images, Debian 13 sif 2.21.0 with 21)."""
    source = (SIFTOOL_GOLDEN.parent / "info_test.go").read_text()
    section = source[source.index(f"func {test}(") :]
    section = section[: section.index("\nfunc ", 1)] if "\nfunc " in section[1:] else section
    found = re.findall(
        r'name:\s+"(\w+)",\s*path:\s+filepath\.Join\(corpus, "([^"]+)"\),(?:\s*id:\s+(\d+),)?',
        section,
    )
    return [(name, image, int(i) if i else None) for name, image, i in found]


HEADER_CASES = siftool_cases("TestApp_Header") if SIFTOOL_GOLDEN.is_dir() else []
GOLDEN_NAMES = {image: name for name, image, _ in HEADER_CASES}
INFO_CASES = (
    {name: (image, i) for name, image, i in siftool_cases("TestApp_Info")}
    if SIFTOOL_GOLDEN.is_dir()
    else {}
)
DUMP_CASES = (
    {
        name: (image, i)
        for name, image, i in siftool_cases("TestApp_Dump")
        if (SIFTOOL_GOLDEN / "TestApp_Dump" / f"{name}.golden").is_file()
    }
    if SIFTOOL_GOLDEN.is_dir()
    else {}
)
#: Go's crypto.Hash names, as siftool prints a signature's hash type
HASH_NAMES = {"SHA256": "SHA-256", "SHA384": "SHA-384", "SHA512": "SHA-512", "SHA1": "SHA-1"}
GO_ZERO_TIME = -62135596800  # time.Time{}.Unix()
NIL_UUID = "00000000-0000-0000-0000-000000000000"


def test_every_reference_image_is_read():
    """siftool's cases name images of the package, and slurmc reads every image there,
    those siftool's tables leave out too (sif 2.21's DSSE-signed ones)."""
    assert SIF_IMAGES.is_dir(), MISSING
    images = sorted(p.name for p in SIF_IMAGES.glob("*.sif"))
    assert set(GOLDEN_NAMES) <= set(images)
    # sif 2.8.3 (Debian 12) has 3 dump goldens, 2.21.0 (Debian 13) 2
    assert len(GOLDEN_NAMES) >= 17 and len(INFO_CASES) >= 8 and len(DUMP_CASES) >= 2
    for name in images:
        s = inspect(name)
        assert s["header"]["version"] == "01" and isinstance(s["descriptors"], list), name


def inspect(name: str) -> dict:
    r = CliRunner().invoke(app, ["inspect", "--json", str(SIF_IMAGES / name)])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["sif"]


def readable_size(size: int) -> str:
    """siftool's readableSize."""
    if -1024 < size < 1024:
        return f"{size} B"
    div, exp, n = 1024, 0, size // 1024
    while n <= -1024 or n >= 1024:
        div *= 1024
        exp += 1
        n //= 1024
    value = size / div
    rounded = int(value + 0.5) if value >= 0 else -int(-value + 0.5)  # math.Round
    return f"{rounded} {'KMGTPE'[exp]}iB"


def go_time(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def key_values(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def render_header(h: dict) -> dict[str, str]:
    out = {}
    if h["launch_script"]:
        out["Launch Script"] = h["launch_script"].rstrip("\n")
    out["Version"] = h["version"]
    if h["arch"] != "unknown":
        out["Primary Architecture"] = h["arch"]
    if h["id"] != NIL_UUID:
        out["ID"] = h["id"]
    if h["created_at"] != GO_ZERO_TIME:
        out["Created At"] = go_time(h["created_at"])
    if h["modified_at"] != GO_ZERO_TIME:
        out["Modified At"] = go_time(h["modified_at"])
    out["Descriptors Free"] = str(h["descriptors_free"])
    out["Descriptors Total"] = str(h["descriptors_total"])
    out["Descriptors Offset"] = str(h["descriptors_offset"])
    out["Descriptors Size"] = readable_size(h["descriptors_size"])
    out["Data Offset"] = str(h["data_offset"])
    out["Data Size"] = readable_size(h["data_size"])
    return out


def type_column(d: dict) -> str:
    kind = d["data_type"]
    if kind == "FS":
        return f"{kind} ({d['fs_type']}/{d['part_type']}/{d['arch']})"
    if kind == "Signature":
        return f"{kind} ({HASH_NAMES[d['hash_type']]})"
    if kind == "Cryptographic Message":
        return f"{kind} ({d['format']}/{d['message']})"
    if kind == "SBOM":
        return f"{kind} ({d['sbom_format']})"
    return kind


def link_text(d: dict) -> str:
    if not d["link"]:
        return "NONE"
    return f"{d['link']} (G)" if d["link_is_group"] else str(d["link"])


LIST_COLUMNS = ["ID", "GROUP", "LINK", "SIF POSITION (start-end)", "TYPE"]


def render_list(descriptors: list[dict]) -> dict[str, str]:
    out = {}
    for d in descriptors:
        cells = [
            str(d["id"]),
            str(d["group"]) if d["group"] else "NONE",
            link_text(d),
            f"{d['offset']}-{d['offset'] + d['size']}",
            type_column(d),
        ]
        out |= {
            f"descriptor {d['id']} {col}": cell
            for col, cell in zip(LIST_COLUMNS, cells, strict=True)
        }
    return out


def golden_list(text: str) -> dict[str, str]:
    """siftool's list table, parsed by its own heading row: one field per descriptor and
    column, named like "descriptor 3 TYPE"."""
    lines = [line for line in text.splitlines() if line and not line.startswith("-")]
    heading = [" ".join(cell.split()) for cell in lines[0].split("|")]
    assert heading == LIST_COLUMNS, heading
    out = {}
    for line in lines[1:]:
        cells = [" ".join(cell.split()) for cell in line.split("|")]
        assert len(cells) == len(heading), line
        out |= {
            f"descriptor {cells[0]} {col}": cell for col, cell in zip(heading, cells, strict=True)
        }
    return out


def agree(image: str, ours: dict[str, str], golden: dict[str, str]) -> None:
    """Field by field; a failure names the image and every field that differs."""
    wrong = [
        f"{image}: {key}: slurmc {ours.get(key, '(not shown)')!r}, "
        f"siftool {golden.get(key, '(not shown)')!r}"
        for key in sorted(ours.keys() | golden.keys())
        if ours.get(key) != golden.get(key)
    ]
    assert not wrong, "\n".join(wrong)


def render_info(d: dict) -> dict[str, str]:
    out = {
        "Data Type": d["data_type"],
        "ID": str(d["id"]),
        "Group ID": str(d["group"]) if d["group"] else "NONE",
        "Linked ID": link_text(d),
        "Offset": str(d["offset"]),
        "Size": str(d["size"]),
    }
    if d["created_at"] != GO_ZERO_TIME:
        out["Created At"] = go_time(d["created_at"])
    if d["modified_at"] != GO_ZERO_TIME:
        out["Modified At"] = go_time(d["modified_at"])
    if d["name"]:
        out["Name"] = d["name"]
    kind = d["data_type"]
    if kind == "FS":
        out |= {"Filesystem Type": d["fs_type"], "Partition Type": d["part_type"]}
        out["Architecture"] = d["arch"]
    elif kind == "Signature":
        out["Hash Type"] = HASH_NAMES[d["hash_type"]]
        if d["fingerprint"]:
            out["Entity"] = d["fingerprint"]
    elif kind == "Cryptographic Message":
        out |= {"Format Type": d["format"], "Message Type": d["message"]}
    elif kind == "SBOM":
        out["Format"] = d["sbom_format"]
    elif kind in ("OCI.Blob", "OCI.RootIndex"):
        out["Digest"] = d["digest"]
    return out


@pytest.mark.parametrize("image", sorted(GOLDEN_NAMES) or ["(package missing)"])
def test_header_agrees_with_siftool(image):
    golden = key_values(
        (SIFTOOL_GOLDEN / "TestApp_Header" / f"{GOLDEN_NAMES[image]}.golden").read_text()
    )
    assert golden, f"{image}: the golden file shows no field"
    agree(image, render_header(inspect(image)["header"]), golden)


@pytest.mark.parametrize("image", sorted(GOLDEN_NAMES) or ["(package missing)"])
def test_list_agrees_with_siftool(image):
    text = (SIFTOOL_GOLDEN / "TestApp_List" / f"{GOLDEN_NAMES[image]}.golden").read_text()
    agree(image, render_list(inspect(image)["descriptors"]), golden_list(text))


@pytest.mark.parametrize("case", sorted(INFO_CASES) or ["(package missing)"])
def test_info_agrees_with_siftool(case):
    image, wanted = INFO_CASES[case]
    (d,) = [d for d in inspect(image)["descriptors"] if d["id"] == wanted]
    golden = key_values((SIFTOOL_GOLDEN / "TestApp_Info" / f"{case}.golden").read_text())
    assert golden, f"{case}: the golden file shows no field"
    agree(f"{image} descriptor {wanted} ({case})", render_info(d), golden)


@pytest.mark.parametrize("case", sorted(DUMP_CASES) or ["(package missing)"])
def test_object_bytes_agree_with_siftool_dump(case):
    """`siftool dump` writes an object's data: the bytes at the offset and size slurmc
    reports are exactly those."""
    image, wanted = DUMP_CASES[case]
    (d,) = [d for d in inspect(image)["descriptors"] if d["id"] == wanted]
    with open(SIF_IMAGES / image, "rb") as f:
        f.seek(d["offset"])
        data = f.read(d["size"])
    assert data == (SIFTOOL_GOLDEN / "TestApp_Dump" / f"{case}.golden").read_bytes(), (
        f"{image} descriptor {wanted}: offset {d['offset']} size {d['size']}"
    )


def test_an_image_whose_root_file_system_is_not_squashfs_still_reports_its_sif():
    """The legacy-signed reference images hold 0xdeadbeef where a SquashFS would be:
    the SIF is read and the note says why there is no file list (found by this oracle:
    slurmc used to refuse the whole image)."""
    s = inspect("one-group-signed-legacy.sif")
    assert re.search(r"primary partition not read: .*no 'hsqs' magic", s["note"])
    assert [d["id"] for d in s["descriptors"]] == [1, 2, 3]


def test_readable_size_matches_siftools_own_table():
    """siftool's TestReadableSize cases (info_test.go)."""
    cases = {1: "1 B", 1024: "1 KiB", 1048576: "1 MiB", 1073741824: "1 GiB"}
    cases |= {1099511627776: "1 TiB", 1125899906842624: "1 PiB", 1152921504606846976: "1 EiB"}
    cases |= {2047: "2 KiB"}
    for size, text in cases.items():
        assert readable_size(size) == text
    assert Path(SIFTOOL_GOLDEN).is_dir()
