"""Accuracy-aware tuning: the search order, the choice, the sensitivity ranking and the failure table.

These tests drive the tuner with a scripted quantizer and evaluator, so every outcome is known in advance;
test_tuning_ort.py runs it on real onnxruntime models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from edgectl.converter.profiles import CalibrationMethod
from edgectl.converter.tuning import (
    AccuracyTolerance,
    Metrics,
    QuantSettings,
    TuningConfig,
    layer_groups,
    quantizable_nodes,
    tune,
)
from onnx import TensorProto, helper

from edgectl.errors import AccuracyToleranceError, ConfigError

LAYERS = ("conv_a", "conv_b", "conv_c", "fc")


@pytest.fixture
def fp32(tmp_path: Path) -> Path:
    """A graph with three convolutions and a Gemm (only the node list matters to the tuner)."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv_a"),
        helper.make_node("Relu", ["a"], ["ar"], name="relu"),
        helper.make_node("Conv", ["ar", "w2"], ["b"], name="conv_b"),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="conv_c"),
        helper.make_node("Flatten", ["c"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 1, 1], [1.0, 1.0]),
            helper.make_tensor("w2", TensorProto.FLOAT, [2, 2, 1, 1], [1.0] * 4),
            helper.make_tensor("wf", TensorProto.FLOAT, [32, 2], [0.5] * 64),
        ],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def scripted(
    accuracy_of: Callable[[QuantSettings], float], latency_of: Callable[[QuantSettings], float]
) -> tuple[Callable[[Path, Path, QuantSettings], None], Callable[[Path], Metrics], list[QuantSettings]]:
    """A quantizer that records its settings in the output file and an evaluator that scores them."""
    calls: list[QuantSettings] = []

    def quantize(src: Path, dst: Path, settings: QuantSettings) -> None:
        calls.append(settings)
        dst.write_text(json.dumps(settings.to_json()))

    def evaluate(path: Path) -> Metrics:
        if path.suffix == ".onnx" and path.name == "model.onnx":
            return Metrics(accuracy=90.0, latency_ms=10.0)
        raw = json.loads(path.read_text())
        settings = QuantSettings(
            calibration=CalibrationMethod(raw["calibration"]),
            per_channel=raw["per_channel"],
            float_nodes=tuple(raw["float_nodes"]),
        )
        return Metrics(accuracy=accuracy_of(settings), latency_ms=latency_of(settings))

    return quantize, evaluate, calls


def fast(settings: QuantSettings) -> float:
    return 4.0 + len(settings.float_nodes)  # each float layer costs time


@pytest.mark.parametrize(
    ("text", "baseline", "allowed"),
    [("1", 90.0, 1.0), ("0.5pt", 90.0, 0.5), ("2points", 80.0, 2.0), ("1%rel", 90.0, 0.9), ("0", 50.0, 0.0)],
)
def test_tolerance_syntax(text: str, baseline: float, allowed: float) -> None:
    assert AccuracyTolerance.parse(text).allowed_drop(baseline) == pytest.approx(allowed)


@pytest.mark.parametrize("text", ["-1", "1%", "abc", "1 pts", "100%rel", ""])
def test_bad_tolerances_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        AccuracyTolerance.parse(text)


def test_quantizable_nodes_lists_conv_and_gemm_in_order(fp32: Path) -> None:
    # Weights named like PyTorch parameters give the layer its module name; others fall back to the node name.
    assert quantizable_nodes(fp32) == [
        ("conv_a", "Conv", "conv_a"),
        ("conv_b", "Conv", "conv_b"),
        ("conv_c", "Conv", "conv_c"),
        ("fc", "Gemm", "fc"),
    ]


def test_default_settings_win_when_they_meet_the_tolerance(fp32: Path, tmp_path: Path) -> None:
    quantize, evaluate, calls = scripted(lambda s: 89.5, fast)
    path, report = tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path,
                        config=TuningConfig(tolerance=AccuracyTolerance(1.0)))  # fmt: skip
    assert len(calls) == 1
    assert report.chosen is not None and report.chosen.stage == "default"
    assert json.loads(path.read_text())["calibration"] == "minmax"
    assert report.chosen.speedup_vs_fp32 == pytest.approx(2.5)


def test_calibration_stage_picks_the_fastest_passing_candidate(fp32: Path, tmp_path: Path) -> None:
    # Only entropy calibration is accurate enough; per-tensor is faster than per-channel.
    quantize, evaluate, calls = scripted(
        lambda s: 89.6 if s.calibration is CalibrationMethod.ENTROPY else 85.0,
        lambda s: 3.0 if not s.per_channel else 4.0,
    )
    _, report = tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path,
                     config=TuningConfig(tolerance=AccuracyTolerance(0.5)))  # fmt: skip
    assert report.chosen is not None
    assert report.chosen.settings == QuantSettings(calibration=CalibrationMethod.ENTROPY, per_channel=False)
    assert report.chosen.stage == "calibration"
    assert not any(s.float_nodes for s in calls)  # the costly sensitivity stage was never needed
    # The default candidate appears once (deduplicated) even though the grid contains it again.
    assert len(calls) == 6
    assert [c.stage for c in report.candidates].count("default") == 1
    assert "entropy per-tensor" in report.to_markdown()


def test_sensitive_layers_are_kept_in_float_when_calibration_is_not_enough(fp32: Path, tmp_path: Path) -> None:
    # conv_a and fc break int8 (each costs 3 points); nothing else matters.
    def accuracy(s: QuantSettings) -> float:
        return 90.0 - 3.0 * sum(1 for n in ("conv_a", "fc") if n not in s.float_nodes)

    quantize, evaluate, _ = scripted(accuracy, fast)
    path, report = tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path,
                        config=TuningConfig(tolerance=AccuracyTolerance(0.5)))  # fmt: skip
    ranking = [s.layer for s in report.sensitivity]
    assert set(ranking[:2]) == {"conv_a", "fc"}
    assert report.sensitivity[0].gain == pytest.approx(3.0)
    assert report.sensitivity[-1].gain == pytest.approx(0.0)
    assert report.chosen is not None
    assert set(report.chosen.settings.float_nodes if report.chosen.settings else ()) == {"conv_a", "fc"}
    assert report.chosen.stage == "mixed"
    assert set(json.loads(path.read_text())["float_nodes"]) == {"conv_a", "fc"}
    assert "Per-layer sensitivity" in report.to_markdown()


def test_nothing_meeting_the_tolerance_fails_with_the_table(fp32: Path, tmp_path: Path) -> None:
    quantize, evaluate, _ = scripted(lambda s: 80.0, fast)
    with pytest.raises(AccuracyToleranceError) as info:
        tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path,
             config=TuningConfig(tolerance=AccuracyTolerance(1.0), max_float_layers=2))  # fmt: skip
    err = info.value
    assert err.exit_code == 3
    report = err.report
    assert report is not None and report.chosen is None  # type: ignore[attr-defined]
    stages = [c.stage for c in report.candidates]  # type: ignore[attr-defined]
    assert stages[0] == "reference"
    assert {"default", "calibration", "sensitivity", "mixed"} <= set(stages)
    assert "| mixed |" in str(err) and "80.00" in str(err)


def test_int8_slower_than_fp32_is_flagged(fp32: Path, tmp_path: Path) -> None:
    quantize, evaluate, _ = scripted(lambda s: 90.0, lambda s: 25.0)
    _, report = tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path,
                     config=TuningConfig(tolerance=AccuracyTolerance(1.0)))  # fmt: skip
    assert report.chosen is not None and report.chosen.slower_than_fp32
    assert report.chosen.to_json()["speedup_vs_fp32"] == pytest.approx(0.4)
    assert "(slower)" in report.to_markdown()


def test_deep_models_are_analysed_per_block(tmp_path: Path) -> None:
    # Six 1x1 convolutions in three blocks of two, weights named as torch.onnx.export names them.
    nodes, inits = [], []
    prev = "x"
    for block in range(3):
        for conv in ("expand", "project"):
            weight = f"blocks.{block}.{conv}.weight"
            nodes.append(helper.make_node("Conv", [prev, weight], [f"{weight}_out"], name=f"node_{len(nodes)}"))
            inits.append(helper.make_tensor(weight, TensorProto.FLOAT, [1, 1, 1, 1], [1.0]))
            prev = f"{weight}_out"
    nodes.append(helper.make_node("Flatten", [prev], ["f"], name="flat"))
    nodes.append(helper.make_node("Gemm", ["f", "head.weight"], ["y"], name="node_head"))
    inits.append(helper.make_tensor("head.weight", TensorProto.FLOAT, [4, 2], [1.0] * 8))
    graph = helper.make_graph(
        nodes,
        "deep",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=inits,
    )
    path = tmp_path / "deep.onnx"
    onnx.save(helper.make_model(graph), str(path))
    per_layer = layer_groups(path, max_groups=24)
    assert [g.name for g in per_layer][:2] == ["blocks.0.expand", "blocks.0.project"]
    assert len(per_layer) == 7
    per_block = layer_groups(path, max_groups=4)
    assert [(g.name, g.nodes) for g in per_block] == [
        ("blocks.0", ("node_0", "node_1")),
        ("blocks.1", ("node_2", "node_3")),
        ("blocks.2", ("node_4", "node_5")),
        ("head", ("node_head",)),
    ]


def test_drops_can_be_measured_from_the_original_models_accuracy(fp32: Path, tmp_path: Path) -> None:
    # The fp32 model given (a pruned one) scores 90.0; the original scored 91.0: only 0.5 points remain for int8.
    quantize, evaluate, _ = scripted(lambda s: 89.8 if s.per_channel else 89.9, fast)
    _, report = tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path,
                     config=TuningConfig(tolerance=AccuracyTolerance(1.5), baseline_accuracy=91.0))  # fmt: skip
    assert report.baseline_accuracy == 91.0
    assert report.candidates[0].drop == pytest.approx(1.0)
    assert report.chosen is not None and report.chosen.stage == "default"
    with pytest.raises(AccuracyToleranceError):
        tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path / "b",
             config=TuningConfig(tolerance=AccuracyTolerance(1.0), baseline_accuracy=91.0))  # fmt: skip


def test_a_float_model_that_already_misses_stops_the_search(fp32: Path, tmp_path: Path) -> None:
    quantize, evaluate, calls = scripted(lambda s: 89.0, fast)
    with pytest.raises(AccuracyToleranceError, match=r"fp32 model itself is 2\.00 points below"):
        tune(fp32, quantize=quantize, evaluate=evaluate, work_dir=tmp_path,
             config=TuningConfig(tolerance=AccuracyTolerance(1.0), baseline_accuracy=92.0))  # fmt: skip
    assert calls == []
