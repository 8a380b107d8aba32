"""Quality bars: a quantization that wrecks accuracy is never shipped silently; golden tolerances discriminate;
the same inputs give the same bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from edgectl.converter import ConvertConfig, convert
from edgectl.runtime.backends import SessionOptions, backend_for
from edgectl.runtime.golden import check_golden

from edgectl.bundle import load_golden, verify_bundle
from edgectl.errors import AccuracyToleranceError, GoldenMismatchError


def _config(models_dir: Path, tmp_path: Path, **kw: Any) -> ConvertConfig:
    """onnxruntime's Distribution calibration collapses this CNN's int8 accuracy (as the issue reports for a
    real one): the case that must never ship silently."""
    return ConvertConfig(
        source=str(models_dir / "cnn.pt"),
        calibration=models_dir / "calib.npz",
        calibrate_method="distribution",
        labels=models_dir / "labels.npy",
        precisions=("fp32", "int8"),
        out=tmp_path / "out",
        latency_runs=3,
        measure_memory=False,
        **kw,
    )


def test_accuracy_drop_beyond_tolerance_fails_without_writing_a_bundle(models_dir: Path, tmp_path: Path) -> None:
    # int8-dynamic quantizes each activation tensor with one range: an outlier feature swamps the real ones.
    config = ConvertConfig(
        source="converter_tiny_models:build_outlier_feature",
        calibration=models_dir / "mlp.npz",
        precisions=("fp32", "int8-dynamic"),
        max_accuracy_drop=0.5,
        out=tmp_path / "out",
        latency_runs=3,
        measure_memory=False,
    )
    with pytest.raises(
        AccuracyToleranceError, match=r"model\.int8-dynamic\.onnx .* lost more than --max-accuracy-drop"
    ):
        convert(config)
    out = tmp_path / "out"
    name = "build_outlier_feature-1"
    assert not (out / name).exists() and not (out / f"{name}.tar").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers
    report = json.loads((out / f"{name}.report.json").read_text())
    assert report["passed"] is False
    rows = {r["path"]: r for r in report["rows"]}
    assert rows["model.int8-dynamic.onnx"]["status"] == "failed" and rows["model.int8-dynamic.onnx"]["drop"] > 50
    assert rows["model.fp32.onnx"]["status"] == "ok"
    assert "FAILED" in (out / f"{name}.report.md").read_text()


def test_accuracy_drop_without_tolerance_is_flagged_loudly(models_dir: Path, tmp_path: Path) -> None:
    result = convert(_config(models_dir, tmp_path))
    int8 = result.report.row("int8")
    assert int8.status == "flagged" and int8.drop is not None and int8.drop > 1.0
    assert any("model.int8.onnx loses" in w for w in result.report.warnings)
    assert "## Warnings" in result.report_md.read_text()
    # A flagged artifact is never preferred over a sound one.
    assert [a.path for a in result.manifest.artifacts] == ["model.fp32.onnx", "model.int8.onnx"]
    assert result.manifest.artifact("model.int8.onnx").metrics["status"] == "flagged"


def test_golden_tolerance_passes_other_correct_paths_and_fails_a_wrong_runtime(
    models_dir: Path, tmp_path: Path
) -> None:
    result = convert(
        ConvertConfig(
            source=str(models_dir / "cnn.pt"),
            calibration=models_dir / "calib.npz",
            precisions=("fp32", "int8"),
            out=tmp_path,
            latency_runs=3,
            measure_memory=False,
        )
    )
    bundle, manifest = result.bundle_dir, result.manifest
    inputs, expected = load_golden(bundle, manifest)
    for art in manifest.artifacts:
        assert set(expected[art.path]) == {"output"}
        session = backend_for("onnx").load(bundle / art.path, SessionOptions(threads=2))
        check_golden(session, bundle, manifest, art.path)
        # Tolerance is a small part of the output scale, not a blanket pass.
        assert art.golden_tolerance["atol"] <= 0.25 * art.metrics["golden"]["scale"]
    # A "wrong runtime": the same graph with the first convolution's output channels mislaid (a layout bug).
    for art in manifest.artifacts:
        model = onnx.load(str(bundle / art.path))
        weight = next(i for i in model.graph.initializer if len(i.dims) == 4)
        array = onnx.numpy_helper.to_array(weight)
        weight.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(array[::-1]), weight.name))
        broken = tmp_path / f"broken-{art.path}"
        onnx.save_model(model, str(broken))
        session = backend_for("onnx").load(broken, SessionOptions())
        with pytest.raises(GoldenMismatchError):
            check_golden(session, bundle, manifest, art.path)
    assert inputs["input"].shape == (4, 3, 16, 16)


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest minus what legitimately varies between runs: the time stamp, timings and memory."""
    data = json.loads(json.dumps(manifest))
    data.pop("created")
    for art in data["artifacts"]:
        art["metrics"].pop("latency_ms")
        art["metrics"].pop("memory")
    return data


def test_same_inputs_give_the_same_bundle(models_dir: Path, tmp_path: Path) -> None:
    runs = []
    for out in ("a", "b"):
        runs.append(
            convert(
                ConvertConfig(
                    source=str(models_dir / "cnn.pt"),
                    calibration=models_dir / "calib.npz",
                    precisions=("fp32", "fp16", "int8"),
                    calibrate_method="entropy",
                    out=tmp_path / out,
                    latency_runs=3,
                    measure_memory=False,
                )
            )
        )
    first, second = (json.loads((r.bundle_dir / "manifest.json").read_text()) for r in runs)
    assert _comparable(first) == _comparable(second)
    assert [a["sha256"] for a in first["artifacts"]] == [a["sha256"] for a in second["artifacts"]]
    assert {f["path"]: f["sha256"] for f in first["files"]} == {f["path"]: f["sha256"] for f in second["files"]}
    golden = [load_golden(r.bundle_dir, verify_bundle(r.bundle_dir)) for r in runs]
    for name in golden[0][0]:
        np.testing.assert_array_equal(golden[0][0][name], golden[1][0][name])
    for art, outs in golden[0][1].items():
        for name, value in outs.items():
            np.testing.assert_array_equal(value, golden[1][1][art][name])
