from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import (
    Artifact,
    Manifest,
    TensorSpec,
    load_golden,
    pack_bundle,
    save_golden,
    unpack_bundle,
    verify_bundle,
    write_manifest,
)
from edgectl.errors import IntegrityError, ManifestError, UnsafePathError


def make_bundle(root: Path, name: str = "tiny", version: int = 1) -> Path:
    d = root / f"{name}-{version}"
    d.mkdir(parents=True)
    (d / "model.onnx").write_bytes(b"not really onnx but hashed all the same")
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    save_golden(d / "golden.npz", {"x": x}, {"model.onnx": {"y": x * 2}})
    manifest = Manifest(
        name=name,
        version=version,
        inputs=[TensorSpec("x", "float32", (-1, 4))],
        outputs=[TensorSpec("y", "float32", (-1, 4))],
        artifacts=[Artifact(path="model.onnx", format="onnx", precision="fp32")],
    )
    write_manifest(d, manifest)
    return d


def test_written_bundle_verifies_and_round_trips(tmp_path: Path) -> None:
    d = make_bundle(tmp_path)
    m = verify_bundle(d)
    assert m.name == "tiny" and m.version == 1
    assert {f.path for f in m.files} == {"model.onnx", "golden.npz"}
    assert m.artifacts[0].length == len(b"not really onnx but hashed all the same")
    inputs, outputs = load_golden(d, m)
    np.testing.assert_array_equal(outputs["model.onnx"]["y"], inputs["x"] * 2)


def test_tampered_file_is_rejected(tmp_path: Path) -> None:
    d = make_bundle(tmp_path)
    (d / "model.onnx").write_bytes(b"not really onnx but hashed all the samE")
    with pytest.raises(IntegrityError, match="sha256"):
        verify_bundle(d)


def test_truncated_file_is_rejected_by_length(tmp_path: Path) -> None:
    d = make_bundle(tmp_path)
    (d / "model.onnx").write_bytes(b"short")
    with pytest.raises(IntegrityError, match="bytes"):
        verify_bundle(d)


def test_unlisted_file_is_rejected(tmp_path: Path) -> None:
    d = make_bundle(tmp_path)
    (d / "extra.py").write_text("print('hi')")
    with pytest.raises(UnsafePathError, match="does not list"):
        verify_bundle(d)


def test_symlink_is_rejected(tmp_path: Path) -> None:
    d = make_bundle(tmp_path)
    (d / "link").symlink_to("/etc/passwd")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        verify_bundle(d)


def test_manifest_path_escaping_bundle_is_rejected(tmp_path: Path) -> None:
    d = make_bundle(tmp_path)
    text = (d / "manifest.json").read_text().replace('"path": "golden.npz"', '"path": "../golden.npz"', 1)
    (d / "manifest.json").write_text(text)
    with pytest.raises(UnsafePathError):
        verify_bundle(d)


def test_bad_version_is_rejected(tmp_path: Path) -> None:
    d = make_bundle(tmp_path)
    text = (d / "manifest.json").read_text().replace('"version": 1', '"version": 0')
    (d / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match="positive integer"):
        verify_bundle(d)


def test_pack_is_deterministic_and_unpacks(tmp_path: Path) -> None:
    d = make_bundle(tmp_path / "src")
    a = pack_bundle(d, tmp_path / "a.tar").read_bytes()
    b = pack_bundle(d, tmp_path / "b.tar").read_bytes()
    assert a == b
    out = unpack_bundle(tmp_path / "a.tar", tmp_path / "dest")
    assert out.name == "tiny-1"
    assert verify_bundle(out).name == "tiny"


def _tar_with(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/path.txt", "tiny-1/../../x"])
def test_tar_with_escaping_path_is_refused_and_leaves_nothing(tmp_path: Path, name: str) -> None:
    tar = _tar_with(tmp_path, [(tarfile.TarInfo(name), b"x")])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError):
        unpack_bundle(tar, dest)
    assert not dest.exists() or not any(dest.iterdir())


def test_tar_with_symlink_member_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("tiny-1/link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tar = _tar_with(tmp_path, [(info, b"")])
    with pytest.raises(UnsafePathError, match="not a regular file"):
        unpack_bundle(tar, tmp_path / "dest")


def test_tampered_tar_leaves_no_partial_bundle(tmp_path: Path) -> None:
    d = make_bundle(tmp_path / "src")
    tar = pack_bundle(d, tmp_path / "b.tar")
    raw = bytearray(tar.read_bytes())
    idx = raw.find(b"not really onnx")
    raw[idx] ^= 0xFF
    tar.write_bytes(bytes(raw))
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError):
        unpack_bundle(tar, dest)
    assert list(dest.iterdir()) == []
