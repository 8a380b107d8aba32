"""``edgectl convert`` with --prune / --finetune / --max-accuracy-drop / --target, end to end through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from convert_cli import error_line, run

from edgectl.bundle import verify_bundle

FACTORY = "converter_tiny_models:build_cnn"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune", "channels:1.5"], "strictly between 0 and 1"),
        (["--prune", "channels:0"], "strictly between 0 and 1"),
        (["--prune", "shrink:0.3"], "Unknown pruning method 'shrink'"),
        (["--prune", "channels:0.3", "--prune-exclude", "clasifier"], "'clasifier' that the model does not have"),
        (["--prune-exclude", "fc"], "need --prune"),
        (["--prune", "magnitude:0.3", "--finetune", "pkg:fn"], "channel pruning only"),
        (["--target", "rpi3"], "Unknown target 'rpi3'"),
        (["--max-accuracy-drop", "1%"], "Invalid --max-accuracy-drop '1%'"),
        (["--prune", "channels:0.3", "--finetune", "edgectl_no_such_pkg:finetune"], "Cannot import module"),
    ],
)
def test_bad_combinations_exit_2_with_one_line(models_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run(FACTORY, "--calibration", models_dir / "calib.npz", "--out", tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in error_line(result)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_pruning_an_onnx_input_is_refused(models_dir: Path, tmp_path: Path) -> None:
    result = run(models_dir / "cnn.onnx", "--calibration", models_dir / "calib_image.npz", "--prune", "channels:0.3",
                 "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 2
    assert "--prune needs the PyTorch model" in error_line(result)


def test_channel_pruning_with_distillation_and_a_target_profile(models_dir: Path, tmp_path: Path) -> None:
    result = run(FACTORY, "--calibration", models_dir / "calib.npz", "--prune", "channels:0.5", "--finetune-steps",
                 "30", "--target", "x86-avx512", "--precision", "fp32", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = verify_bundle(tmp_path / "build_cnn-1")
    steps = manifest.converter["steps"]["prune"]
    assert steps["after"]["params"] < 0.6 * steps["before"]["params"]
    # x86-avx512 prunes in blocks of 16 channels; this model's 8 / 16-channel layers cannot lose a whole block,
    # so the exact ratio is used (and recorded).
    assert steps["after"]["macs"] < 0.6 * steps["before"]["macs"]
    assert steps["config"]["round_to"] is None
    assert steps["recovery"]["method"] == "distillation" and steps["recovery"]["steps"] == 30
    assert steps["protected"] == ["fc"]  # the classes are model outputs
    assert steps["onnx_bytes"]["after"] < steps["onnx_bytes"]["before"]
    # The profile filled what no flag set; the explicit --precision fp32 is recorded as an override.
    assert manifest.target["profile"] == "x86-avx512"
    assert manifest.target["settings"]["latency_threads"] == 4
    assert manifest.target["overridden"] == ["precisions"]
    assert [a.precision for a in manifest.artifacts] == ["fp32"]
    report = (tmp_path / "build_cnn-1.report.md").read_text()
    assert "## Pruning: channels 0.5" in report and "unpruned.fp32.onnx" in report


def test_user_finetune_callable_is_used(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_recovery.py").write_text(
        "import json\n"
        "def finetune(model, data):\n"
        "    with open(__file__ + '.json', 'w') as fh:\n"
        "        json.dump({'samples': len(data), 'teacher': data.teacher is not None}, fh)\n"
        "    return model\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_recovery", raising=False)
    out = tmp_path / "out"
    result = run(FACTORY, "--calibration", models_dir / "calib.npz", "--prune", "channels:0.3",
                 "--finetune", "my_recovery:finetune", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "my_recovery.py.json").read_text()) == {"samples": 48, "teacher": True}
    manifest = verify_bundle(out / "build_cnn-1")
    assert manifest.converter["steps"]["prune"]["recovery"]["callable"] == "my_recovery:finetune"


def test_magnitude_pruning_reports_compressed_size(models_dir: Path, tmp_path: Path) -> None:
    result = run(FACTORY, "--calibration", models_dir / "calib.npz", "--prune", "magnitude:0.6", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    steps = verify_bundle(tmp_path / "build_cnn-1").converter["steps"]["prune"]
    assert steps["after"]["params"] == steps["before"]["params"]
    assert steps["after"]["nonzero_params"] < 0.6 * steps["before"]["nonzero_params"]
    assert steps["after"]["gzip_bytes"] < steps["before"]["gzip_bytes"]
    assert "not the latency" in (tmp_path / "build_cnn-1.report.md").read_text()


def test_max_accuracy_drop_tunes_int8_and_records_the_candidates(models_dir: Path, tmp_path: Path) -> None:
    result = run(FACTORY, "--calibration", models_dir / "calib.npz", "--labels", models_dir / "labels.npy",
                 "--precision", "int8", "--max-accuracy-drop", "5%rel", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = verify_bundle(tmp_path / "build_cnn-1")
    tuning = manifest.converter["steps"]["tuning"]
    assert tuning["tolerance"] == "5%rel"
    assert tuning["chosen"]["meets_tolerance"] and tuning["candidates"][0]["stage"] == "reference"
    (int8,) = manifest.artifacts
    assert int8.quantization["tuning"]["chosen"] == tuning["chosen"]["label"]
    assert int8.metrics["drop"] <= tuning["allowed_drop"] + 1e-6
    assert "## Accuracy-aware int8" in (tmp_path / "build_cnn-1.report.md").read_text()


def test_a_tolerance_the_pruned_model_already_misses_exits_3(models_dir: Path, tmp_path: Path) -> None:
    # Pruning 90% of the channels without recovery loses far more than 0.1 points: the fp32 model already misses,
    # so the tuner stops at once instead of searching.
    result = run(FACTORY, "--calibration", models_dir / "calib.npz", "--labels", models_dir / "labels.npy",
                 "--prune", "channels:0.9", "--finetune", "none", "--precision", "int8", "--max-accuracy-drop", "0.1",
                 "--max-float-layers", "1", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "The fp32 model itself is" in result.output and "no int8 candidate can do better" in result.output
    assert not (tmp_path / "build_cnn-1").exists()


def test_x86_profile_never_ships_int8_that_measured_slower_than_fp32(models_dir: Path, tmp_path: Path) -> None:
    result = run(FACTORY, "--calibration", models_dir / "calib.npz", "--target", "x86-avx512", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    manifest = verify_bundle(tmp_path / "build_cnn-1")
    report = json.loads((tmp_path / "build_cnn-1.report.json").read_text())
    fp32_ms = next(r for r in report["rows"] if r["precision"] == "fp32")["metrics"]["latency_ms_p50"]
    fallback = manifest.converter["steps"].get("precision_fallback")
    if fallback is None:  # int8 won on this machine: it is shipped, and it is faster
        (int8,) = manifest.artifacts
        assert int8.precision == "int8" and int8.metrics["latency_ms"]["p50"] < fp32_ms
    else:  # int8 lost: fp32 is shipped instead, and the report says why
        assert [a.precision for a in manifest.artifacts] == ["fp32"]
        assert fallback["latency_vs_fp32"] >= 1.0
        assert any("ships fp32 instead" in w for w in report["warnings"])


def test_magnitude_pruning_of_a_torchscript_file(models_dir: Path, tmp_path: Path) -> None:
    result = run(models_dir / "cnn.pt", "--input-shape", "1x3x16x16", "--calibration", models_dir / "calib.npz",
                 "--prune", "magnitude:0.5", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    steps = verify_bundle(tmp_path / "cnn-1").converter["steps"]["prune"]
    assert steps["after"]["nonzero_params"] < 0.6 * steps["before"]["nonzero_params"]
    assert steps["onnx_bytes"]["after"] == pytest.approx(steps["onnx_bytes"]["before"], rel=0.05)  # dense shapes
    # Channel pruning cannot resize a TorchScript module: a clear error, exit 2.
    refused = run(models_dir / "cnn.pt", "--input-shape", "1x3x16x16", "--calibration", models_dir / "calib.npz",
                  "--prune", "channels:0.5", "--out", tmp_path / "b")  # fmt: skip
    assert refused.exit_code == 2
    assert "Channel pruning needs an eager PyTorch model" in error_line(refused)
