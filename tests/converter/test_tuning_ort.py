"""The tuner on real onnxruntime quantization: a genuine int8 failure and its recovery.

The model has one convolution channel whose activations are ~300x larger than the others (as outlier features in
real networks are), compensated by the next layer so that the float model is ordinary. onnxruntime quantizes
activations per tensor, so that one channel sets the scale and the other channels round to almost nothing: every
calibration method and weight granularity misses a 1-point tolerance, and only keeping the two layers around the
outlier tensor in float recovers the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from edgectl.converter.tuning import AccuracyTolerance, QuantSettings
from edgectl.converter.tuning_ort import TuningData, tune_onnx
from edgectl.runtime.backends import SessionOptions, load

from benchmarks.tuning.outlier import build_outlier_model
from edgectl.errors import AccuracyToleranceError


def tuning_data(path: Path) -> TuningData:
    x = np.random.default_rng(1).random((160, 1, 8, 8)).astype(np.float32)
    session = load(path, SessionOptions(threads=1))
    y = session.run({"x": x})["y"]
    return TuningData(
        calibration=[{"x": x[:32]}],
        validation=[{"x": x[32:96]}, {"x": x[96:]}],
        reference=[[y[32:96]], [y[96:]]],
        latency_runs=3,
    )


def test_outlier_channel_breaks_plain_int8_and_the_tuner_recovers_it(tmp_path: Path) -> None:
    model = tmp_path / "outlier.onnx"
    build_outlier_model(model, outlier=300.0)
    artifact, report = tune_onnx(
        model,
        data=tuning_data(model),
        tolerance=AccuracyTolerance(1.0),
        default=QuantSettings(),
        work_dir=tmp_path / "work",
    )
    by_stage = {c.stage: c for c in report.candidates}
    assert not by_stage["default"].meets and by_stage["default"].drop > 10
    assert not any(c.meets for c in report.candidates if c.stage == "calibration")
    assert report.sensitivity[0].layer == "conv2"  # the consumer of the outlier tensor
    chosen = report.chosen
    assert chosen is not None and chosen.settings is not None
    assert set(chosen.settings.float_nodes) == {"conv1", "conv2"}
    assert chosen.drop <= 1.0
    assert artifact.precision == "int8" and artifact.path.is_file()
    assert artifact.quantization["nodes_to_exclude"] == list(chosen.settings.float_nodes)
    assert artifact.quantization["tuning"]["tolerance"] == "1pt"
    # The chosen file really is int8 where it can be: the Gemm is still quantized.
    ops = {n.op_type for n in onnx.load(str(artifact.path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_an_impossible_tolerance_fails_with_every_candidate_listed(tmp_path: Path) -> None:
    model = tmp_path / "outlier.onnx"
    build_outlier_model(model, outlier=300.0)
    with pytest.raises(AccuracyToleranceError) as info:
        tune_onnx(
            model,
            data=tuning_data(model),
            tolerance=AccuracyTolerance(0.0),
            default=QuantSettings(),
            work_dir=tmp_path / "work",
            max_float_layers=1,
        )
    message = str(info.value)
    assert "int8 minmax per-channel" in message and "| sensitivity |" in message
    assert "Per-layer sensitivity" in message
