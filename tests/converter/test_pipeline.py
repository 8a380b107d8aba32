"""End-to-end conversions through the Python API, one per input kind, checked against the bundle format."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgectl.converter import ConvertConfig, ConvertResult, convert
from edgectl.runtime.backends import SessionOptions, backend_for
from edgectl.runtime.golden import check_golden

from edgectl.bundle import verify_bundle


def fast(**kw: Any) -> ConvertConfig:
    """A config with short timing loops: tests check outcomes, never timing."""
    kw.setdefault("latency_runs", 3)
    kw.setdefault("measure_memory", False)
    return ConvertConfig(**kw)


def test_torchscript_three_precisions_make_one_verified_bundle(models_dir: Path, tmp_path: Path) -> None:
    result = convert(
        fast(
            source=str(models_dir / "cnn.pt"),
            calibration=models_dir / "calib.npz",
            labels=models_dir / "labels.npy",
            precisions=("fp32", "fp16", "int8"),
            out=tmp_path,
            measure_memory=True,
            # 48 samples: one flipped decision is 2 points; keep the preference order under test, not flagging.
            warn_accuracy_drop=10.0,
        )
    )
    assert result.bundle_dir == tmp_path / "cnn-1"
    assert result.tar_path == tmp_path / "cnn-1.tar"
    assert result.report_json.is_file() and result.report_md.is_file()
    manifest = verify_bundle(result.bundle_dir)
    # Best first: int8, then fp16, then the fp32 fallback.
    assert [a.path for a in manifest.artifacts] == ["model.int8.onnx", "model.fp16.onnx", "model.fp32.onnx"]
    assert sorted(p.name for p in result.bundle_dir.iterdir()) == [
        "golden.npz",
        "manifest.json",
        "model.fp16.onnx",
        "model.fp32.onnx",
        "model.int8.onnx",
    ]
    assert manifest.inputs[0].name == "input" and manifest.inputs[0].shape == (-1, 3, 16, 16)
    assert manifest.outputs[0].shape == (-1, 10)
    int8 = manifest.artifact("model.int8.onnx")
    assert int8.quantization["format"] == "QDQ" and int8.quantization["per_channel"] is True
    assert "QuantizeLinear" in int8.required_ops and "DequantizeLinear" in int8.required_ops
    assert int8.metrics["accuracy"] >= 90.0  # labels are the original's own predictions
    assert manifest.metrics["reference_quality"] == 100.0
    for art in manifest.artifacts:
        assert art.metrics["memory"]["peak_mb"] > 0
        assert art.metrics["size_bytes"] == art.length
    assert int8.length < manifest.artifact("model.fp32.onnx").length
    # What the runtime will check before activating: each artifact passes its own golden outputs.
    for art in manifest.artifacts:
        session = backend_for("onnx").load(result.bundle_dir / art.path, SessionOptions(threads=2))
        assert (
            check_golden(session, result.bundle_dir, manifest, art.path).max_abs_error <= art.golden_tolerance["atol"]
        )
    with tarfile.open(result.tar_path) as tar:
        assert sorted(tar.getnames())[0] == "cnn-1/golden.npz"
    report = json.loads(result.report_json.read_text())
    assert report["passed"] is True and report["metric"] == "accuracy"
    assert {r["path"] for r in report["rows"]} == {a.path for a in manifest.artifacts}
    assert "| model.int8.onnx | yes | OK |" in result.report_md.read_text()


def test_reference_stats_use_the_documented_layout(models_dir: Path, tmp_path: Path) -> None:
    result = convert(fast(source=str(models_dir / "cnn.pt"), calibration=models_dir / "calib.npz", out=tmp_path))
    stats = result.manifest.reference_stats
    calib = np.load(models_dir / "calib.npz")["input"]
    inp = stats["inputs"]["input"]
    assert set(inp) == {"channel_axis", "mean", "std", "min", "max", "count"}
    assert inp["channel_axis"] == 1 and inp["count"] == 48
    np.testing.assert_allclose(inp["mean"], calib.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inp["std"], calib.std(axis=(0, 2, 3)), rtol=1e-4)
    assert inp["min"] == pytest.approx(float(calib.min()))
    out = stats["outputs"]["output"]
    assert set(out) == {"mean", "std", "histogram", "top1_distribution"}
    assert len(out["histogram"]["edges"]) == len(out["histogram"]["counts"]) + 1
    assert sum(out["histogram"]["counts"]) == 48 * 10
    assert len(out["top1_distribution"]) == 10 and sum(out["top1_distribution"]) == pytest.approx(1.0)


def test_pt2_program_keeps_its_names_and_dynamic_batch(models_dir: Path, tmp_path: Path) -> None:
    result = convert(fast(source=str(models_dir / "cnn.pt2"), calibration=models_dir / "calib.npz", out=tmp_path))
    manifest = result.manifest
    assert result.bundle_dir.name == "cnn-1"
    assert manifest.source["kind"] == "torch.export"
    assert manifest.inputs[0].shape[0] == -1
    assert result.report.row("fp32").metrics.max_abs_error < 1e-4
    assert result.report.row("fp32").quality == 100.0


def test_factory_with_weights_records_the_weights_hash(models_dir: Path, tmp_path: Path) -> None:
    result = convert(
        fast(
            source="converter_tiny_models:build_cnn",
            weights=models_dir / "cnn.pth",
            input_shape=((1, 3, 16, 16),),
            precisions=("fp32", "int8-dynamic"),
            out=tmp_path,
        )
    )
    manifest = result.manifest
    assert manifest.name == "build_cnn"
    from edgectl.fsutil import sha256_file

    assert manifest.source["sha256"] == sha256_file(models_dir / "cnn.pth")[0]
    dyn = manifest.artifact("model.int8-dynamic.onnx")
    assert dyn.precision == "int8" and dyn.quantization["mode"] == "dynamic"
    assert any("random inputs" in w for w in result.report.warnings)


def test_onnx_input_takes_names_from_the_model(models_dir: Path, tmp_path: Path) -> None:
    result = convert(
        fast(
            source=str(models_dir / "cnn.onnx"),
            calibration=models_dir / "calib_image.npz",
            precisions=("int8",),
            labels=models_dir / "labels.npy",
            out=tmp_path,
        )
    )
    manifest = result.manifest
    assert [a.path for a in manifest.artifacts] == ["model.int8.onnx"]
    assert manifest.inputs[0].name == "image" and manifest.outputs[0].name == "logits"
    assert manifest.source["kind"] == "onnx"
    # fp32 is measured as the baseline but not shipped when not asked for.
    assert [r.shipped for r in result.report.rows] == [False, True]


def test_in_memory_module_with_int8_dynamic(models_dir: Path, tmp_path: Path) -> None:
    from converter_tiny_models import build_mlp

    result: ConvertResult = convert(
        fast(model=build_mlp(), calibration=models_dir / "mlp.npz", precisions=("fp32", "int8-dynamic"), out=tmp_path)
    )
    manifest = result.manifest
    assert manifest.name == "tinymlp" and manifest.source["kind"] == "module"
    assert manifest.inputs[0].shape == (-1, 16)
    assert manifest.reference_stats["inputs"]["input"]["channel_axis"] == 1
    assert len(manifest.reference_stats["inputs"]["input"]["mean"]) == 16
    assert result.report.row("int8-dynamic").quality is not None and result.report.row("int8-dynamic").quality > 80


def test_versions_increase_and_names_are_sanitised(models_dir: Path, tmp_path: Path) -> None:
    base = {"source": str(models_dir / "mlp.pt"), "calibration": models_dir / "mlp.npz", "out": tmp_path}
    first = convert(fast(**base, name="mlp"))
    second = convert(fast(**base, name="mlp"))
    assert (first.manifest.version, second.manifest.version) == (1, 2)
    from edgectl.converter.load import sanitise_name

    assert sanitise_name("My Model (v2)") == "my-model-v2"
    assert sanitise_name("__") == "model"


def test_console_shows_progress_and_the_report_table(models_dir: Path, tmp_path: Path) -> None:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140)
    convert(
        fast(
            source=str(models_dir / "mlp.pt"),
            calibration=models_dir / "mlp.npz",
            precisions=("fp32", "int8"),
            out=tmp_path,
        ),
        console=console,
    )
    text = buffer.getvalue()
    assert "calibrating (minmax)" in text and "validating" in text  # the progress bars
    assert "int8.onnx" in text and "agree %" in text  # the table


def test_reference_stats_feed_the_runtime_drift_monitor(models_dir: Path, tmp_path: Path) -> None:
    """The drift baseline is a contract with the runtime: its monitor reads it, and the calibration data itself
    shows no drift against it."""
    from edgectl.runtime.drift import DriftMonitor

    result = convert(fast(source=str(models_dir / "cnn.pt"), calibration=models_dir / "calib.npz", out=tmp_path))
    monitor = DriftMonitor.from_reference(result.manifest.reference_stats, window=100)
    assert monitor is not None
    images = np.load(models_dir / "calib.npz")["input"]
    session = backend_for("onnx").load(result.bundle_dir / "model.fp32.onnx", SessionOptions())
    monitor.observe({"input": images}, session.run({"input": images}))
    assert all(abs(float(s)) < 1e-6 for shift in monitor.mean_shift().values() for s in np.ravel(shift))
    assert all(value < 0.01 for value in monitor.psi().values())


def test_tflite_artifacts_join_the_same_bundle_and_pass_their_golden_check(models_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("litert_torch", reason="TFLite export needs the convert-tflite extra")
    result = convert(
        fast(
            source=str(models_dir / "cnn.pt"),
            calibration=models_dir / "calib.npz",
            precisions=("fp32", "int8"),
            formats=("onnx", "tflite"),
            out=tmp_path,
            warn_accuracy_drop=10.0,
        )
    )
    manifest = verify_bundle(result.bundle_dir)
    assert [a.path for a in manifest.artifacts] == [
        "model.int8.onnx",
        "model.int8.tflite",
        "model.fp32.onnx",
        "model.fp32.tflite",
    ]
    for art in manifest.artifacts:
        assert art.metrics["agreement"] >= 90.0
        session = backend_for(art.format).load(result.bundle_dir / art.path, SessionOptions())
        check_golden(session, result.bundle_dir, manifest, art.path)
    assert manifest.artifact("model.fp32.tflite").metrics["max_abs_error"] < 1e-4
