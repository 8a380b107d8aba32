"""`edgectl convert --format onnx,tflite`: the converter pipeline makes, validates and packages TFLite artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_golden, verify_bundle

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch", reason="the TFLite export needs the convert-tflite extra")

from edgectl.converter import ConvertConfig, convert  # noqa: E402
from edgectl.runtime.backends import SessionOptions  # noqa: E402
from edgectl.runtime.loader import load_version  # noqa: E402


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 4)
    ).eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    paths = {"calibration": root / "calib.npy", "validation": root / "val.npy"}
    np.save(paths["calibration"], rng.standard_normal((32, 3, 6, 6)).astype(np.float32))
    np.save(paths["validation"], rng.standard_normal((24, 3, 6, 6)).astype(np.float32))
    return paths


def test_convert_onnx_and_tflite_validates_every_artifact_side_by_side(data: dict[str, Path], tmp_path: Path) -> None:
    result = convert(
        ConvertConfig(
            model=_model(),
            name="both",
            calibration=data["calibration"],
            validation=data["validation"],
            precisions=("fp32", "int8"),
            formats=("onnx", "tflite"),
            calibration_samples=20,
            latency_runs=3,
            measure_memory=False,
            out=tmp_path,
        )
    )
    manifest = verify_bundle(result.bundle_dir)
    by_path = {a.path: a for a in manifest.artifacts}
    assert {"model.fp32.tflite", "model.int8.tflite", "model.fp32.onnx", "model.int8.onnx"} <= set(by_path)
    tfl8 = by_path["model.int8.tflite"]
    assert tfl8.format == "tflite" and tfl8.precision == "int8"
    assert tfl8.quantization["scheme"] == "static" and tfl8.quantization["calibration_samples"] == 20
    # The report measured the TFLite files with the LiteRT backend, next to the ONNX ones.
    rows = {r.path: r for r in result.report.rows}
    assert rows["model.fp32.tflite"].quality == pytest.approx(100.0)  # agreement with the reference model
    assert rows["model.int8.tflite"].metrics.size_bytes == tfl8.length
    assert (
        rows["model.int8.tflite"].metrics.backend == "litert"
        and rows["model.int8.onnx"].metrics.backend == "onnxruntime"
    )
    # Golden outputs were recorded for each TFLite artifact and that very file reproduces them.
    _, outputs = load_golden(result.bundle_dir, manifest)
    assert {"model.fp32.tflite", "model.int8.tflite"} <= set(outputs)


def test_tflite_only_bundle_loads_with_litert_and_passes_its_golden_check(
    data: dict[str, Path], tmp_path: Path
) -> None:
    result = convert(
        ConvertConfig(
            model=_model(),
            name="tfl",
            calibration=data["calibration"],
            validation=data["validation"],
            precisions=("int8",),
            formats=("tflite",),
            latency_runs=3,
            measure_memory=False,
            out=tmp_path,
        )
    )
    assert [a.path for a in result.manifest.artifacts] == ["model.int8.tflite"]
    loaded = load_version(result.bundle_dir, SessionOptions(threads=1))
    try:
        assert loaded.session.backend == "litert" and loaded.golden is not None
        assert loaded.golden.artifact == "model.int8.tflite" and loaded.golden.max_abs_error <= loaded.golden.atol
        x = np.load(data["validation"])[:5]
        name = loaded.inputs[0].name
        got = loaded.session.run({name: x})[loaded.outputs[0].name]
        with torch.no_grad():
            want = _model()(torch.from_numpy(x)).numpy()
        assert got.shape == (5, 4) and np.abs(got - want).mean() < 0.1 * np.ptp(want)
    finally:
        loaded.close()
