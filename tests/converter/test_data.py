"""Calibration data: arrays bound to inputs, image folders with a recorded preprocessing, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgectl.converter import ConvertConfig, convert
from edgectl.converter.data import bind, preprocess_image, preprocessing_spec, read_labels
from PIL import Image

from edgectl.bundle import TensorSpec
from edgectl.errors import CalibrationDataError, ConfigError

SPEC = TensorSpec("input", "float32", (-1, 3, 16, 16))


def _write_images(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(3)
    folder.mkdir()
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(20 + i, 24, 3), dtype=np.uint8)  # odd sizes: resize + crop matter
        path = folder / f"img{i:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_imagenet_preset_is_a_plain_recorded_recipe() -> None:
    spec = preprocessing_spec("imagenet", crop=224, channels=3)
    assert spec == {
        "kind": "image",
        "color": "RGB",
        "resize": 256,
        "crop": 224,
        "interpolation": "bilinear",
        "scale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "layout": "NCHW",
    }
    with pytest.raises(ConfigError, match="Unknown preprocessing 'imagenett'"):
        preprocessing_spec("imagenett", crop=None, channels=3)


def test_preprocessing_resizes_crops_normalises_and_lays_out(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:, :, 0] = 255  # pure red
    Image.fromarray(pixels).save(path)
    spec = preprocessing_spec("imagenet", crop=16, channels=3)
    chw = preprocess_image(path, spec)
    assert chw.shape == (3, 16, 16) and chw.dtype == np.float32
    np.testing.assert_allclose(chw[0], (1.0 - 0.485) / 0.229, rtol=1e-5)
    np.testing.assert_allclose(chw[1], (0.0 - 0.456) / 0.224, rtol=1e-5)
    hwc = preprocess_image(path, preprocessing_spec("unit-nhwc", crop=16, channels=3))
    assert hwc.shape == (16, 16, 3)
    np.testing.assert_allclose(hwc[..., 0], 1.0, rtol=1e-6)


def test_image_folder_conversion_records_its_preprocessing(models_dir: Path, tmp_path: Path) -> None:
    _write_images(tmp_path / "images", 6)
    result = convert(
        ConvertConfig(
            source=str(models_dir / "cnn.pt"),
            calibration=tmp_path / "images",
            preprocess="unit",
            image_size=16,
            precisions=("int8",),
            out=tmp_path / "out",
            latency_runs=2,
            measure_memory=False,
        )
    )
    manifest = result.manifest
    assert manifest.preprocessing is not None
    assert manifest.preprocessing["crop"] == 16 and manifest.preprocessing["layout"] == "NCHW"
    assert manifest.inputs[0].shape == (-1, 3, 16, 16)
    stats = manifest.reference_stats["inputs"]["input"]
    assert stats["count"] == 6 and stats["min"] >= 0.0 and stats["max"] <= 1.0  # "unit" scales pixels to [0, 1]


def test_arrays_bind_by_name_then_by_position() -> None:
    data = np.zeros((5, 3, 16, 16), np.float32)
    assert bind([("input", data)], [SPEC], origin="x").arrays["input"] is not None
    assert len(bind([("arr_0", data)], [SPEC], origin="x")) == 5
    narrowed = bind([("arr_0", data.astype(np.float64))], [SPEC], origin="x")
    assert narrowed.arrays["input"].dtype == np.float32
    with pytest.raises(CalibrationDataError, match="holds arrays"):
        bind([("a", data), ("b", data)], [SPEC], origin="x")


def test_batches_are_consecutive_and_complete() -> None:
    data = bind([("input", np.arange(5 * 768, dtype=np.float32).reshape(5, 3, 16, 16))], [SPEC], origin="x")
    batches = data.batches(2)
    assert [b["input"].shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b["input"] for b in batches]), data.arrays["input"])
    assert [b["input"].shape[0] for b in data.batches(2, drop_last=True)] == [2, 2]


def test_labels_from_npy_txt_and_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "l.npy", np.array([1, 2, 3]))
    (tmp_path / "l.txt").write_text("1\n2\n3\n")
    np.savez(tmp_path / "l.npz", labels=np.array([1, 2, 3]))
    for name in ("l.npy", "l.txt", "l.npz"):
        assert read_labels(tmp_path / name).tolist() == [1, 2, 3]
    np.save(tmp_path / "bad.npy", np.zeros((3, 2)))
    with pytest.raises(CalibrationDataError, match="1-D integer array"):
        read_labels(tmp_path / "bad.npy")


def test_too_few_labels_are_refused(models_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "few.npy", np.array([0, 1]))
    with pytest.raises(ConfigError, match="2 labels for 48 validation samples"):
        convert(
            ConvertConfig(
                source=str(models_dir / "cnn.pt"),
                calibration=models_dir / "calib.npz",
                labels=tmp_path / "few.npy",
                out=tmp_path,
                measure_memory=False,
            )
        )
