"""quantize_onnx / convert_fp16: onnxruntime's tooling behind a typed config (the tuner's entry point)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from edgectl.converter import QuantizationConfig, quantize_onnx
from edgectl.converter.quantize import CalibrationReader, convert_fp16

from edgectl.errors import CalibrationDataError, ConfigError


def _batches(models_dir: Path) -> list[dict[str, np.ndarray]]:
    images = np.load(models_dir / "calib_image.npz")["image"]
    return [{"image": images[i : i + 8]} for i in range(0, 32, 8)]


def _float_convs(path: Path) -> set[str]:
    """Names of Conv nodes whose weight does not come from a DequantizeLinear (i.e. kept in float)."""
    model = onnx.load(str(path))
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] not in dq_outputs}


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_qdq_per_channel(models_dir: Path, tmp_path: Path, method: str) -> None:
    batches = _batches(models_dir)
    seen: list[int] = []
    reader = CalibrationReader(batches, on_batch=lambda: seen.append(1))
    out = tmp_path / f"{method}.onnx"
    art = quantize_onnx(models_dir / "cnn.onnx", out, QuantizationConfig(calibrate_method=method), reader)
    assert art.precision == "int8" and art.path == out
    assert art.quantization["calibrate_method"] == method and art.quantization["calibration_samples"] == 32
    assert len(seen) >= len(batches)  # every batch went through calibration
    model = onnx.load(str(out))
    weight_scales = [
        i for i in model.graph.initializer if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] in (8, 16)
    ]
    assert weight_scales, "per-channel weight scales expected"
    assert not _float_convs(out)


def test_excluded_nodes_stay_float(models_dir: Path, tmp_path: Path) -> None:
    first_conv = next(n.name for n in onnx.load(str(models_dir / "cnn.onnx")).graph.node if n.op_type == "Conv")
    out = tmp_path / "excluded.onnx"
    art = quantize_onnx(
        models_dir / "cnn.onnx",
        out,
        QuantizationConfig(nodes_to_exclude=(first_conv,), preprocess=False),
        CalibrationReader(_batches(models_dir)),
    )
    assert _float_convs(out) == {first_conv}
    assert art.quantization["nodes_to_exclude"] == [first_conv]


def test_dynamic_needs_no_calibration(models_dir: Path, tmp_path: Path) -> None:
    art = quantize_onnx(models_dir / "cnn.onnx", tmp_path / "dyn.onnx", QuantizationConfig(mode="dynamic"), None)
    assert art.quantization["mode"] == "dynamic" and "calibrate_method" not in art.quantization
    assert art.path.stat().st_size < (models_dir / "cnn.onnx").stat().st_size


def test_static_without_data_is_refused(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationDataError, match="empty"):
        CalibrationReader([])
    with pytest.raises(CalibrationDataError, match="needs calibration data"):
        quantize_onnx(models_dir / "cnn.onnx", tmp_path / "x.onnx", QuantizationConfig(), None)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="mode"):
        QuantizationConfig(mode="weird")
    with pytest.raises(ConfigError, match="calibration method"):
        QuantizationConfig(calibrate_method="kl")


def test_fp16_keeps_float32_io(models_dir: Path, tmp_path: Path) -> None:
    art = convert_fp16(models_dir / "cnn.onnx", tmp_path / "half.onnx")
    model = onnx.load(str(art.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
