"""OCI archives, layouts and docker-archives, built here with tarfile (whiteouts,
gzip and plain layers, nested indexes), read back through the FileTree contract."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from slurmc.images import ImageFormatError
from slurmc.images.contents import discover
from slurmc.images.oci import open_oci


def layer(files: dict, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, value in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple) and value[0] == "link":
                info.type, info.linkname = tarfile.SYMTYPE, value[1]
                tf.addfile(info)
            elif isinstance(value, tuple) and value[0] == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, value[1]
                tf.addfile(info)
            elif value is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
    data = buf.getvalue()
    return gzip.compress(data) if compress else data


def blob(blobs: dict, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[f"blobs/sha256/{digest[7:]}"] = data
    return {"digest": digest, "size": len(data)}


def oci_files(layers: list[tuple[bytes, bool]], env: list[str], nested: bool = False) -> dict:
    blobs: dict[str, bytes] = {}
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": env, "Labels": {"a": "b"}}}
    manifest = {
        "schemaVersion": 2,
        "config": {
            **blob(blobs, json.dumps(config).encode()),
            "mediaType": "application/vnd.oci.image.config.v1+json",
        },
        "layers": [
            {
                **blob(blobs, data),
                "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""),
            }
            for data, gz in layers
        ],
    }
    desc = {
        **blob(blobs, json.dumps(manifest).encode()),
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    if nested:
        inner = {
            "schemaVersion": 2,
            "manifests": [
                {
                    **desc,
                    "platform": {"os": "linux", "architecture": "unknown"},
                    "digest": "sha256:" + "0" * 64,
                },
                {**desc, "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }
        desc = {
            **blob(blobs, json.dumps(inner).encode()),
            "mediaType": "application/vnd.oci.image.index.v1+json",
        }
    return {
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode(),
        **blobs,
    }


def write_tar(path: Path, files: dict) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


LOWER = {
    "etc/": None,
    "etc/os-release": b'PRETTY_NAME="Ubuntu 22.04.4 LTS"\n',
    "usr/bin/python3.10": b"\x7fELF",
    "usr/bin/python3": ("link", "python3.10"),
    "usr/lib/python3/dist-packages/gone-1.0.dist-info/METADATA": b"Name: gone\nVersion: 1.0\n",
    "opt/conda/envs/old/conda-meta/x-1-0.json": b'{"name": "x", "version": "1"}',
    "usr/local/lib/python3.10/dist-packages/numpy-1.26.0.dist-info/METADATA": b"Name: numpy\n"
    b"Version: 1.26.0\n",
    "usr/local/lib/python3.10/dist-packages/numpy-1.26.0.dist-info/INSTALLER": b"pip\n",
}
UPPER = {
    "usr/lib/python3/dist-packages/.wh.gone-1.0.dist-info": b"",
    "opt/conda/envs/.wh..wh..opq": b"",
    "opt/conda/envs/new/conda-meta/y-2-0.json": b'{"name": "y", "version": "2"}',
    "./usr/local/lib/python3.10/dist-packages/numpy-1.26.0.dist-info/METADATA": b"Name: numpy\n"
    b"Version: 1.26.4\n",
    "usr/local/lib/python3.10/dist-packages/torch-2.3.0.dist-info/METADATA": b"Name: torch\n"
    b"Version: 2.3.0\n",
    "usr/local/lib/python3.10/dist-packages/hard-1.dist-info/METADATA": (
        "hard",
        "usr/local/lib/python3.10/dist-packages/torch-2.3.0.dist-info/METADATA",
    ),
}


def check_merged(image) -> None:
    c = discover(image.tree(), image.env)
    assert c.os_name == "Ubuntu 22.04.4 LTS"
    envs = {e.prefix: e for e in c.environments}
    assert "/opt/conda/envs/old" not in envs  # hidden by the opaque whiteout
    assert [p.name for p in envs["/opt/conda/envs/new"].conda_packages] == ["y"]
    local = {p.name: p.version for p in envs["/usr/local"].pip_packages}
    assert local == {"numpy": "1.26.4", "torch": "2.3.0"}  # the hard link has torch's data
    assert envs["/usr"].pip_packages == []  # .wh.gone-1.0.dist-info
    assert c.with_conda == "source /opt/conda/bin/activate new"
    assert [p.path for p in c.pythons] == ["/usr/bin/python3", "/usr/bin/python3.10"]


@pytest.mark.parametrize("gz", [False, True])
def test_oci_archive_layers_and_whiteouts(tmp_path, gz):
    files = oci_files(
        [(layer(LOWER, gz), gz), (layer(UPPER, gz), gz)],
        ["PATH=/bin", "WITH_CONDA=source /opt/conda/bin/activate new"],
    )
    image = open_oci(str(write_tar(tmp_path / "img.oci.tar", files)))
    try:
        assert image.format == "oci-archive"
        assert image.tags == ["latest"]
        d = image.to_dict()
        assert (d["architecture"], d["os"], d["labels"]) == ("amd64", "linux", {"a": "b"})
        assert len(d["layers"]) == 2
        check_merged(image)
    finally:
        image.close()


def test_oci_layout_directory_with_nested_index(tmp_path):
    files = oci_files(
        [(layer(LOWER), False), (layer(UPPER, True), True)],
        ["WITH_CONDA=source /opt/conda/bin/activate new"],
        nested=True,
    )
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    image = open_oci(str(tmp_path))
    assert image.format == "oci-layout"
    check_merged(image)


def test_docker_archive(tmp_path):
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["WITH_CONDA=source /opt/conda/bin/activate new"]},
        }
    )
    files = {
        "manifest.json": json.dumps(
            [
                {
                    "Config": "cfg.json",
                    "RepoTags": ["x:1"],
                    "Layers": ["l1/layer.tar", "l2/layer.tar"],
                }
            ]
        ).encode(),
        "cfg.json": config.encode(),
        "l1/layer.tar": layer(LOWER),
        "l2/layer.tar": layer(UPPER),
    }
    image = open_oci(str(write_tar(tmp_path / "d.tar", files)))
    assert (image.format, image.tags) == ("docker-archive", ["x:1"])
    check_merged(image)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"hello": b"x"}, "neither an OCI layout"),
        ({"oci-layout": b"{}", "index.json": b"{oops"}, "not valid JSON"),
        ({"oci-layout": b"{}", "index.json": b'{"manifests": []}'}, "no usable manifest"),
        (
            {"oci-layout": b"{}", "index.json": b'{"manifests": [{"digest": "sha256:zz"}]}'},
            "invalid digest",
        ),
        (
            {
                "oci-layout": b"{}",
                "index.json": json.dumps(
                    {"manifests": [{"digest": "sha256:" + "a" * 64}]}
                ).encode(),
            },
            "missing from the archive",
        ),
    ],
)
def test_malformed_archives(tmp_path, files, message):
    with pytest.raises(ImageFormatError, match=message):
        open_oci(str(write_tar(tmp_path / "bad.tar", files)))


def test_truncated_archive_and_layer(tmp_path):
    files = oci_files([(layer(LOWER, True), True)], [])
    path = write_tar(tmp_path / "img.tar", files)
    data = path.read_bytes()
    # cut the gzip layer short: rewrite its blob with half its bytes
    layer_name = next(n for n, d in files.items() if d[:2] == b"\x1f\x8b")
    cut = dict(files, **{layer_name: files[layer_name][: len(files[layer_name]) // 2]})
    with pytest.raises(ImageFormatError, match="damaged or truncated"):
        open_oci(str(write_tar(tmp_path / "cut.tar", cut)))
    # a layer whose bytes are garbage though its size is right
    bad = dict(files, **{layer_name: b"\x1f\x8b" + b"\xff" * (len(files[layer_name]) - 2)})
    image = open_oci(str(write_tar(tmp_path / "bad.tar", bad)))
    with pytest.raises(ImageFormatError, match="damaged or truncated"):
        image.tree().find(["etc/os-release"])
    (tmp_path / "short.tar").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageFormatError, match=r"damaged or truncated|missing"):
        open_oci(str(tmp_path / "short.tar"))


def test_zstd_layers_are_refused_with_a_hint(tmp_path):
    files = oci_files([(b"\x28\xb5\x2f\xfd" + b"\0" * 64, False)], [])
    image = open_oci(str(write_tar(tmp_path / "z.tar", files)))
    with pytest.raises(ImageFormatError, match=r"zstd.*--exec"):
        image.tree().find(["etc/os-release"])
