"""``edgectl convert`` through click's CliRunner: exit codes and one-line messages, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from convert_cli import error_line, run

from edgectl.bundle import verify_bundle


def test_cli_converts_torchscript_into_bundle_tar_and_reports(models_dir: Path, tmp_path: Path) -> None:
    result = run(
        models_dir / "cnn.pt",
        "--input-shape",
        "1x3x16x16",
        "--calibration",
        models_dir / "calib.npz",
        "--precision",
        "fp32,int8",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "int8.onnx" in result.output and f"bundle: {tmp_path / 'cnn-1'}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn-1", "cnn-1.report.json", "cnn-1.report.md", "cnn-1.tar"]
    manifest = verify_bundle(tmp_path / "cnn-1")
    assert manifest.converter["parameters"]["precisions"] == ["fp32", "int8"]
    assert manifest.converter["parameters"]["input_shape"] == [[1, 3, 16, 16]]


def test_missing_model_file(tmp_path: Path) -> None:
    result = run(tmp_path / "nope.pt", "--out", tmp_path)
    assert result.exit_code == 2
    assert "nope.pt does not exist" in error_line(result)


def test_wrong_input_shape_is_named(models_dir: Path, tmp_path: Path) -> None:
    result = run(models_dir / "mlp.pt", "--input-shape", "1x10", "--out", tmp_path)
    assert result.exit_code == 2
    assert "does not accept inputs of shape input: 2x10" in error_line(result)
    assert "mat1 and mat2 shapes cannot be multiplied" in error_line(result)


def test_factory_that_cannot_be_imported(tmp_path: Path) -> None:
    result = run("no_such_pkg.models:build_net", "--input-shape", "1x3x8x8", "--out", tmp_path)
    assert result.exit_code == 2
    assert "Cannot import module 'no_such_pkg.models'" in error_line(result)


def test_factory_that_returns_something_else(tmp_path: Path) -> None:
    result = run("converter_tiny_models:build_not_a_module", "--input-shape", "1x4", "--out", tmp_path)
    assert result.exit_code == 2
    assert "returned str, not a torch.nn.Module" in error_line(result)


def test_calibration_of_the_wrong_shape(models_dir: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "small.npz", input=np.zeros((4, 3, 8, 8), np.float32))
    result = run(
        models_dir / "cnn.pt",
        "--input-shape",
        "1x3x16x16",
        "--calibration",
        tmp_path / "small.npz",
        "--precision",
        "int8",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 2
    assert "input 'input' has shape 4x3x8x8, the model expects Nx3x16x16" in error_line(result)


def test_calibration_of_the_wrong_dtype(models_dir: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "ints.npz", image=np.zeros((4, 3, 16, 16), np.int64))
    result = run(
        models_dir / "cnn.onnx", "--calibration", tmp_path / "ints.npz", "--precision", "int8", "--out", tmp_path
    )
    assert result.exit_code == 2
    assert "input 'image' has dtype int64, the model expects float32" in error_line(result)


def test_integer_data_for_a_float_torch_model(models_dir: Path, tmp_path: Path) -> None:
    # TorchScript declares no dtypes: integer data is taken at its word (token ids are integers) and the
    # model's own complaint is reported.
    np.savez(tmp_path / "ints.npz", input=np.zeros((4, 16), np.int64))
    result = run(models_dir / "mlp.pt", "--calibration", tmp_path / "ints.npz", "--out", tmp_path)
    assert result.exit_code == 2
    assert "does not accept inputs" in error_line(result) and "Long" in error_line(result)


def test_empty_calibration_set(models_dir: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "empty.npz", input=np.zeros((0, 3, 16, 16), np.float32))
    result = run(
        models_dir / "cnn.pt",
        "--input-shape",
        "1x3x16x16",
        "--calibration",
        tmp_path / "empty.npz",
        "--precision",
        "int8",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 2
    assert "is empty" in error_line(result)


def test_empty_image_folder(models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    result = run(
        models_dir / "cnn.pt",
        "--calibration",
        tmp_path / "images",
        "--preprocess",
        "unit",
        "--precision",
        "int8",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 2
    assert "holds no images" in error_line(result)


def test_unsupported_operator_is_named(tmp_path: Path) -> None:
    result = run("converter_tiny_models:build_unsupported", "--input-shape", "1x4x4", "--out", tmp_path)
    assert result.exit_code == 2
    assert "aten._linalg_svd" in error_line(result)


def test_existing_bundle_is_refused_unless_forced(models_dir: Path, tmp_path: Path) -> None:
    args = [models_dir / "mlp.pt", "--calibration", models_dir / "mlp.npz", "--out", tmp_path, "--version", "1"]
    fresh = run(*args[:-4], "--out", tmp_path / "new" / "folder", "--force")  # --force into a folder not made yet
    assert fresh.exit_code == 0, fresh.output
    assert run(*args).exit_code == 0
    first = json.loads((tmp_path / "mlp-1" / "manifest.json").read_text())
    refused = run(*args)
    assert refused.exit_code == 2
    assert "already exists" in error_line(refused) and "--force" in error_line(refused)
    forced = run(*args, "--force", "--precision", "fp32,int8-dynamic")
    assert forced.exit_code == 0, forced.output
    replaced = verify_bundle(tmp_path / "mlp-1")
    assert [a.path for a in replaced.artifacts] != [a["path"] for a in first["artifacts"]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_int8_needs_calibration(models_dir: Path, tmp_path: Path) -> None:
    result = run(models_dir / "mlp.pt", "--precision", "int8", "--out", tmp_path)
    assert result.exit_code == 2
    assert "Static int8 needs calibration data" in error_line(result)


def test_tflite_from_an_onnx_input_is_refused(models_dir: Path, tmp_path: Path) -> None:
    result = run(models_dir / "cnn.onnx", "--format", "onnx,tflite", "--out", tmp_path)
    assert result.exit_code == 2
    assert "TFLite export needs the PyTorch model" in error_line(result)


def test_accuracy_tolerance_exits_3(models_dir: Path, tmp_path: Path) -> None:
    result = run(
        "converter_tiny_models:build_outlier_feature",
        "--calibration",
        models_dir / "mlp.npz",
        "--precision",
        "int8-dynamic",
        "--max-accuracy-drop",
        "0.5",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 3
    assert "No bundle written" in error_line(result)
    assert "FAILED" in result.output  # the report table is shown
    assert not (tmp_path / "build_outlier_feature-1").exists()


def test_recipe_holds_the_options_and_flags_override_it(models_dir: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "edgectl.toml"
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "calib.npz", input=np.load(models_dir / "mlp.npz")["arr_0"])
    recipe.write_text(
        "[convert]\n"
        f'source = "{models_dir / "mlp.pt"}"\n'
        'calibration = "data/calib.npz"\n'  # relative to the recipe
        "per-channel = false\n"
        'name = "recipe-mlp"\n'
        'out = "bundles"\n'
        'precisions = ["fp32", "int8"]\n'
    )
    result = run("--config", recipe, "--precision", "int8")
    assert result.exit_code == 0, result.output
    manifest = verify_bundle(tmp_path / "bundles" / "recipe-mlp-1")
    assert [a.path for a in manifest.artifacts] == ["model.int8.onnx"]  # the flag won
    assert manifest.artifacts[0].quantization["per_channel"] is False  # the recipe's value was kept


def test_unknown_recipe_key(tmp_path: Path) -> None:
    recipe = tmp_path / "edgectl.toml"
    recipe.write_text('[convert]\nsource = "x.pt"\nprecison = "int8"\n')
    result = run("--config", recipe)
    assert result.exit_code == 2
    assert "Unknown option(s) precison" in error_line(result)


def test_interrupted_conversion_leaves_no_bundle(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgectl.converter import ConvertConfig, convert, package

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(package, "write_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(
            ConvertConfig(
                source=str(models_dir / "mlp.pt"),
                calibration=models_dir / "mlp.npz",
                out=tmp_path,
                latency_runs=2,
                measure_memory=False,
            )
        )
    assert list(tmp_path.iterdir()) == []


def test_interrupted_cli_run_leaves_nothing_behind(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgectl.converter import package

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the bundle is being written

    monkeypatch.setattr(package, "write_manifest", interrupted)
    result = run(models_dir / "mlp.pt", "--calibration", models_dir / "mlp.npz", "--out", tmp_path)
    assert result.exit_code != 0 and "Aborted" in result.output
    assert list(tmp_path.iterdir()) == []


def test_onnx_operator_without_a_kernel_is_named(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    result = run(tmp_path / "custom.onnx", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "uses operator 'com.example:FancyOp', which onnxruntime cannot run" in error_line(result)


def test_out_must_be_a_folder(models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = run(models_dir / "mlp.pt", "--out", tmp_path / "file")
    assert result.exit_code == 2
    assert "is a file" in error_line(result)


def test_file_that_is_not_torchscript(tmp_path: Path) -> None:
    (tmp_path / "weights.pt").write_bytes(b"not a zip archive")
    result = run(tmp_path / "weights.pt", "--out", tmp_path)
    assert result.exit_code == 2
    assert "is not a TorchScript archive" in error_line(result)


def test_failed_forced_replacement_keeps_the_old_bundle(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgectl.converter import ConvertConfig, convert, package

    config = ConvertConfig(
        source=str(models_dir / "mlp.pt"),
        calibration=models_dir / "mlp.npz",
        out=tmp_path,
        version=1,
        force=True,
        latency_runs=2,
        measure_memory=False,
    )
    old = convert(config).manifest

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(package, "write_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(config)
    assert verify_bundle(tmp_path / "mlp-1").created == old.created
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unwritable_output_folder(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgectl.converter import package

    def denied(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    # Simulated: the tests run as root, for whom no folder is read-only.
    monkeypatch.setattr(package.shutil, "copyfile", denied)
    result = run(models_dir / "mlp.pt", "--calibration", models_dir / "mlp.npz", "--out", tmp_path)
    assert result.exit_code == 2
    assert "Cannot read or write" in error_line(result) and "Permission denied" in error_line(result)
    assert not (tmp_path / "mlp-1").exists()
