"""TFLite export with litert-torch and the AI Edge Quantizer, checked by running the files with LiteRT."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgectl.errors import (
    CalibrationDataError,
    ConfigError,
    MissingDependencyError,
    SignatureError,
    UnsupportedOperatorError,
)

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch", reason="the TFLite export needs the convert-tflite extra")

from edgectl.converter.tflite import Int8Scheme, TfliteOptions, export_tflite_artifacts  # noqa: E402
from edgectl.converter.types import ExportedArtifact  # noqa: E402

Artifacts = dict[str, ExportedArtifact]
from edgectl.runtime.backends import SessionOptions  # noqa: E402
from edgectl.runtime.backends.litert import LiteRTBackend  # noqa: E402


class TwoHeads(torch.nn.Module):
    """A tiny CNN with two inputs and two outputs (the flatten makes it a fixed-batch model in TFLite)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6 * 8 * 8, 5)

    def forward(self, img: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.fc(torch.relu(self.conv(img)).flatten(1)) + bias
        return logits, logits.softmax(-1)


def _data(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.standard_normal((n, 1, 8, 8)).astype(np.float32),
        "offset": (0.1 * rng.standard_normal((n, 5))).astype(np.float32),
    }


def _export(out: Path, precisions: list[str], **options: Any) -> list[ExportedArtifact]:
    torch.manual_seed(0)
    model = TwoHeads().eval()
    example = tuple(torch.from_numpy(a) for a in _data(4, 1).values())
    return export_tflite_artifacts(
        model,
        example,
        precisions=precisions,
        calibration=[_data(8, 2), _data(8, 3)],
        input_names=["image", "offset"],
        output_names=["logits", "probs"],
        out_dir=out,
        options=TfliteOptions(calibration_samples=12, **options),
    )


def _reference(data: dict[str, np.ndarray]) -> np.ndarray:
    torch.manual_seed(0)
    with torch.no_grad():
        logits, _ = TwoHeads().eval()(torch.from_numpy(data["image"]), torch.from_numpy(data["offset"]))
    return logits.numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    arts = _export(tmp_path_factory.mktemp("tfl"), ["fp32", "fp16", "int8", "int8-dynamic"])
    return {a.path.name: a for a in arts}


def test_every_precision_becomes_a_named_tflite_file_that_runs_like_torch(
    exported: Artifacts,
) -> None:
    assert list(exported) == [
        "model.fp32.tflite",
        "model.fp16.tflite",
        "model.int8.tflite",
        "model.int8-dynamic.tflite",
    ]
    data = _data(6, 7)
    want = _reference(data)
    tolerance = {"model.fp32.tflite": 1e-4, "model.fp16.tflite": 5e-3, "model.int8-dynamic.tflite": 0.1}
    for name, art in exported.items():
        assert art.format == "tflite" and art.path.is_file()
        session = LiteRTBackend().load(art.path, SessionOptions(threads=1))
        # The SignatureDef carries the caller's names, in order, and the session takes any batch.
        assert [t.name for t in session.signature.inputs] == ["image", "offset"]
        assert [t.name for t in session.signature.outputs] == ["logits", "probs"]
        assert session.signature.inputs[0].shape == (-1, 1, 8, 8)
        got = session.run(data)["logits"]
        assert got.shape == (6, 5) and got.dtype == np.float32
        if name in tolerance:
            np.testing.assert_allclose(got, want, atol=tolerance[name])
        else:  # static int8 of an untrained model calibrated on 12 rows: a few percent of the output range
            assert np.abs(got - want).mean() < 0.1 * np.ptp(want)
    assert [exported[n].precision for n in exported] == ["fp32", "fp16", "int8", "int8"]


def test_quantized_files_are_smaller_and_record_their_parameters(exported: Artifacts) -> None:
    size = {n: a.path.stat().st_size for n, a in exported.items()}
    assert size["model.fp16.tflite"] < 0.7 * size["model.fp32.tflite"]
    assert size["model.int8.tflite"] < 0.6 * size["model.fp32.tflite"]  # tiny model: headers weigh in
    static = exported["model.int8.tflite"].quantization
    assert static["scheme"] == "static" and static["io"] == "float32" and static["calibration_samples"] == 12
    assert static["calibration_range"] == "minmax"
    assert static["weights"]["granularity"] == "channelwise" and static["tool"] == "ai-edge-quantizer"
    assert exported["model.int8-dynamic.tflite"].quantization["scheme"] == "dynamic"
    assert exported["model.fp16.tflite"].quantization["weights"]["dtype"] == "float16"
    assert exported["model.fp32.tflite"].quantization["export_batch"] == 1
    # Float I/O around an integer graph: the quantize / dequantize ops are inside the model.
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(exported["model.int8.tflite"].required_ops)
    assert "QUANTIZE" not in exported["model.fp32.tflite"].required_ops


def test_int8_io_model_has_int8_tensors_and_the_session_quantizes_for_float_callers(tmp_path: Path) -> None:
    (art,) = _export(tmp_path, ["int8"], int8_io=True)
    recorded = art.quantization["io_quantization"]
    assert set(recorded) == {"image", "offset", "logits", "probs"}
    assert all(v["dtype"] == "int8" for v in recorded.values())
    session = LiteRTBackend().load(art.path, SessionOptions(threads=1))
    assert session.quantized_io["image"] == (pytest.approx(recorded["image"]["scale"]), recorded["image"]["zero_point"])
    assert session.signature.inputs[0].dtype == "float32"  # what the manifest (and callers) see
    data = _data(3, 9)
    float_out = session.run(data)["logits"]
    # Passing already-quantized int8 arrays gives the same answer as letting the session quantize floats.
    quantized = {}
    for name, value in data.items():
        scale, zero = session.quantized_io[name]
        quantized[name] = np.clip(np.round(value / scale) + zero, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(session.run(quantized)["logits"], float_out)
    want = _reference(data)
    assert np.abs(float_out - want).mean() < 0.1 * np.ptp(want)


def test_operators_litert_torch_cannot_convert_are_all_named_and_onnx_suggested(tmp_path: Path) -> None:
    class TwoUnsupported(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.bucketize(x, torch.tensor([0.0, 0.5])).float() + torch.linalg.svd(x)[1].sum()

    with pytest.raises(UnsupportedOperatorError) as err:
        export_tflite_artifacts(
            TwoUnsupported(),
            (torch.zeros(1, 4, 4),),
            precisions=["fp32"],
            calibration=[],
            input_names=["x"],
            output_names=["y"],
            out_dir=tmp_path,
            options=TfliteOptions(),
        )
    # Not just the first failure: every op of the program without a LiteRT lowering.
    assert err.value.operators == ["aten._linalg_svd.default", "aten.bucketize.Tensor"]
    assert "aten.bucketize.Tensor" in str(err.value) and "--format onnx" in str(err.value)


def test_dynamic_batch_the_model_cannot_take_is_a_signature_error(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="dynamic batch") as err:
        _export(tmp_path, ["fp32"], dynamic_batch=True)
    assert "dynamic_batch=False" in str(err.value)


def test_names_that_do_not_fit_the_model_are_refused(tmp_path: Path) -> None:
    model = TwoHeads().eval()
    example = tuple(torch.from_numpy(a) for a in _data(1, 1).values())
    common: dict[str, Any] = {
        "precisions": ["fp32"],
        "calibration": [],
        "out_dir": tmp_path,
        "options": TfliteOptions(),
    }
    with pytest.raises(SignatureError, match="2 example inputs but 1 input names"):
        export_tflite_artifacts(model, example, input_names=["image"], output_names=["a", "b"], **common)
    with pytest.raises(SignatureError, match="returns 2 outputs but 1 output names"):
        export_tflite_artifacts(model, example, input_names=["i", "o"], output_names=["a"], **common)


def test_static_int8_without_or_with_wrong_calibration_data_is_refused(tmp_path: Path) -> None:
    model = TwoHeads().eval()
    example = tuple(torch.from_numpy(a) for a in _data(1, 1).values())
    names: dict[str, Any] = {
        "input_names": ["image", "offset"],
        "output_names": ["logits", "probs"],
        "options": TfliteOptions(),
    }
    with pytest.raises(CalibrationDataError, match="needs calibration data"):
        export_tflite_artifacts(model, example, precisions=["int8"], calibration=[], out_dir=tmp_path, **names)
    bad = [{"image": np.zeros((2, 1, 8, 8), np.float32)}]
    with pytest.raises(CalibrationDataError, match="has inputs"):
        export_tflite_artifacts(model, example, precisions=["int8"], calibration=bad, out_dir=tmp_path, **names)


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="full-integer"):
        TfliteOptions(int8_io=True, int8_scheme=Int8Scheme.WEIGHT_ONLY)
    with pytest.raises(ConfigError, match="at least 1"):
        TfliteOptions(calibration_samples=0)
    with pytest.raises(ConfigError, match="Unknown TFLite int8 scheme"):
        TfliteOptions(int8_scheme="half")  # type: ignore[arg-type]
    weight_only: Any = "weight-only"  # a string from a recipe or flag
    assert TfliteOptions(int8_scheme=weight_only).int8_scheme is Int8Scheme.WEIGHT_ONLY


def test_float_layers_stay_float_in_static_int8(tmp_path: Path) -> None:
    (full,) = _export(tmp_path / "all", ["int8"])
    (mixed,) = _export(tmp_path / "mixed", ["int8"], float_layers=("fc",))
    assert mixed.quantization["float_layers"] == ["fc"]
    # The 384x5 linear layer keeps its float32 weights (7.5 KiB instead of 1.9 KiB as int8).
    assert mixed.path.stat().st_size - full.path.stat().st_size > 4000
    got = LiteRTBackend().load(mixed.path, SessionOptions(threads=1)).run(_data(4, 6))["logits"]
    want = _reference(_data(4, 6))
    assert np.abs(got - want).mean() < 0.1 * np.ptp(want)
    with pytest.raises(ConfigError, match="not a regular expression"):
        TfliteOptions(float_layers=("conv(",))


def test_weight_only_int8_keeps_float_compute(tmp_path: Path) -> None:
    (art,) = _export(tmp_path, ["int8"], int8_scheme=Int8Scheme.WEIGHT_ONLY)
    assert art.quantization["scheme"] == "weight-only" and "QUANTIZE" not in art.required_ops
    got = LiteRTBackend().load(art.path, SessionOptions(threads=1)).run(_data(2, 4))["logits"]
    np.testing.assert_allclose(got, _reference(_data(2, 4)), atol=0.05)


def test_without_litert_torch_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # makes `import litert_torch` raise ImportError
    with pytest.raises(MissingDependencyError) as err:
        _export(tmp_path, ["fp32"])
    assert err.value.package == "litert-torch" and "pip install 'edgectl[convert-tflite]'" in str(err.value)
    with pytest.raises(ConfigError, match="cannot make precision 'int4'"):
        _export(tmp_path, ["int4"])
