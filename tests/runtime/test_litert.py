"""The LiteRT backend with real interpreters over models exported by litert-torch in the tests themselves."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgectl.runtime.backends import SessionOptions, backend_for
from edgectl.runtime.backends.litert import BatchMode, LiteRTBackend, TfliteRuntimeBackend
from edgectl.runtime.golden import check_golden
from edgectl.runtime.store import ModelStore

from edgectl.bundle import Artifact, Manifest, TensorSpec, pack_bundle, save_golden, write_manifest
from edgectl.errors import GoldenMismatchError, MissingDependencyError, ModelLoadError, SignatureError

pytest.importorskip("ai_edge_litert", reason="the LiteRT backend needs the tflite extra")
torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch", reason="the test models are exported with the convert-tflite extra")

from edgectl.converter.tflite import TfliteOptions, export_tflite_artifacts  # noqa: E402


class Flat(torch.nn.Module):
    """conv -> flatten -> linear: its reshape pins the batch, so the batch-1 TFLite model cannot resize."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class Pooled(torch.nn.Module):
    """conv -> global mean -> linear: no fixed reshape, so the batch-1 TFLite model resizes to any batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


X = np.random.default_rng(5).standard_normal((5, 3, 6, 6)).astype(np.float32)


def _export(model: torch.nn.Module, out: Path, precisions: tuple[str, ...] = ("fp32",), **opts: Any) -> list[Path]:
    calib = [{"x": np.random.default_rng(2).standard_normal((16, 3, 6, 6)).astype(np.float32)}]
    arts = export_tflite_artifacts(
        model,
        (torch.from_numpy(X[:1]),),
        precisions=precisions,
        calibration=calib,
        input_names=["x"],
        output_names=["y"],
        out_dir=out,
        options=TfliteOptions(**opts),
    )
    return [a.path for a in arts]


def _torch(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(model.eval()(torch.from_numpy(x)).numpy())


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("litert")
    flat32, flat8 = _export(Flat(), root / "flat", ("fp32", "int8"))
    (flat8io,) = _export(Flat(), root / "flat-io", ("int8",), int8_io=True)
    (pooled,) = _export(Pooled(), root / "pooled")
    import litert_torch

    # A file made without edgectl's renaming: its signature says args_0 / output_0.
    raw = root / "raw.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's own pytree deprecation, inside litert-torch
        litert_torch.convert(Flat().eval(), (torch.from_numpy(X[:1]),)).export(str(raw))
    return {"flat": flat32, "flat8": flat8, "flat8io": flat8io, "pooled": pooled, "raw": raw}


def test_batch_one_model_that_cannot_resize_runs_row_by_row(models: dict[str, Path]) -> None:
    session = LiteRTBackend().load(models["flat"], SessionOptions(threads=1))
    assert session.batch_mode is BatchMode.ROW_BY_ROW and session.backend == "litert"
    assert session.signature.inputs == (TensorSpec("x", "float32", (-1, 3, 6, 6)),)
    assert session.signature.outputs == (TensorSpec("y", "float32", (-1, 3)),)
    got = session.run({"x": X})["y"]
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, _torch(Flat(), X), atol=1e-5)


def test_batch_one_model_that_resizes_runs_the_batch_in_one_call(models: dict[str, Path]) -> None:
    session = LiteRTBackend().load(models["pooled"], SessionOptions(threads=1))
    assert session.batch_mode is BatchMode.RESIZE
    got = session.run({"x": X})["y"]
    np.testing.assert_allclose(got, _torch(Pooled(), X), atol=1e-5)
    # Back and forth between sizes keeps answering correctly.
    np.testing.assert_allclose(session.run({"x": X[:2]})["y"], got[:2], atol=1e-6)
    np.testing.assert_allclose(session.run({"x": X})["y"], got, atol=1e-6)


def test_threads_and_xnnpack_come_from_session_options(models: dict[str, Path]) -> None:
    with_xnn = LiteRTBackend().load(models["flat"], SessionOptions(threads=2))
    without = LiteRTBackend().load(models["flat"], SessionOptions(threads=1, xnnpack=False))
    assert with_xnn.threads == 2 and without.threads == 1 and not without.xnnpack
    np.testing.assert_allclose(with_xnn.run({"x": X})["y"], without.run({"x": X})["y"], atol=1e-5)


def test_int8_io_model_takes_floats_or_raw_int8(models: dict[str, Path]) -> None:
    session = LiteRTBackend().load(models["flat8io"], SessionOptions(threads=1))
    assert set(session.quantized_io) == {"x", "y"}
    assert session.signature.inputs[0].dtype == "float32" and session.signature.outputs[0].dtype == "float32"
    scale, zero = session.quantized_io["x"]
    raw = np.clip(np.round(X / scale) + zero, -128, 127).astype(np.int8)
    from_float = session.run({"x": X})["y"]
    np.testing.assert_array_equal(session.run({"x": raw})["y"], from_float)
    # The float-I/O int8 model (quantize / dequantize inside) computes the same integer graph.
    inner = LiteRTBackend().load(models["flat8"], SessionOptions(threads=1)).run({"x": X})["y"]
    np.testing.assert_allclose(from_float, inner, atol=2 * session.quantized_io["y"][0])


def test_wrong_names_shapes_or_batches_are_signature_errors(models: dict[str, Path]) -> None:
    session = LiteRTBackend().load(models["flat"], SessionOptions(threads=1))
    with pytest.raises(SignatureError, match=r"expects inputs \['x'\], got \['image'\]"):
        session.run({"image": X})
    with pytest.raises(SignatureError, match=r"shape \[5, 3, 7, 6\]"):
        session.run({"x": np.zeros((5, 3, 7, 6), np.float32)})
    with pytest.raises(SignatureError, match="shape"):
        session.run({"x": np.zeros((3, 6, 6), np.float32)})


def _bundle(
    root: Path, model_file: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], golden_y: np.ndarray
) -> Path:
    d = root / "m-1"
    d.mkdir(parents=True)
    (d / "model.fp32.tflite").write_bytes(model_file.read_bytes())
    save_golden(d / "golden.npz", {inputs[0].name: X[:3]}, {"model.fp32.tflite": {outputs[0].name: golden_y}})
    manifest = Manifest(
        name="m",
        version=1,
        inputs=inputs,
        outputs=outputs,
        artifacts=[Artifact(path="model.fp32.tflite", format="tflite", precision="fp32")],
    )
    write_manifest(d, manifest)
    return d


def test_foreign_names_are_mapped_by_order_inside_a_bundle(models: dict[str, Path], tmp_path: Path) -> None:
    spec_in, spec_out = TensorSpec("pixels", "float32", (-1, 3, 6, 6)), TensorSpec("scores", "float32", (-1, 3))
    d = _bundle(tmp_path, models["raw"], [spec_in], [spec_out], _torch(Flat(), X[:3]))
    session = LiteRTBackend().load(d / "model.fp32.tflite", SessionOptions(threads=1))
    assert [t.name for t in session.signature.inputs] == ["pixels"]
    np.testing.assert_allclose(session.run({"pixels": X})["scores"], _torch(Flat(), X), atol=1e-5)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([TensorSpec("a", "float32", (-1, 3, 6, 6)), TensorSpec("b", "float32", (-1, 2))], "1 inputs / 1 outputs"),
        ([TensorSpec("x", "float32", (-1, 3, 8, 8))], r"'x' float32 \[-1, 3, 8, 8\]"),
        ([TensorSpec("x", "int64", (-1, 3, 6, 6))], "int64"),
    ],
)
def test_tflite_file_that_does_not_fit_its_manifest_is_refused_at_load(
    models: dict[str, Path], tmp_path: Path, inputs: list[TensorSpec], message: str
) -> None:
    d = _bundle(tmp_path, models["flat"], inputs, [TensorSpec("y", "float32", (-1, 3))], np.zeros((3, 3), np.float32))
    with pytest.raises(SignatureError, match=message):
        LiteRTBackend().load(d / "model.fp32.tflite", SessionOptions(threads=1))


def test_golden_check_refuses_outputs_recorded_for_other_weights(models: dict[str, Path], tmp_path: Path) -> None:
    specs = ([TensorSpec("x", "float32", (-1, 3, 6, 6))], [TensorSpec("y", "float32", (-1, 3))])
    good = _bundle(tmp_path / "good", models["flat"], *specs, _torch(Flat(), X[:3]))
    session = LiteRTBackend().load(good / "model.fp32.tflite", SessionOptions(threads=1))
    from edgectl.bundle import verify_bundle

    result = check_golden(session, good, verify_bundle(good), "model.fp32.tflite")
    assert result.max_abs_error < 1e-5
    # Same file, but golden outputs computed from a model with other weights: what a wrong runtime would give.
    bad = _bundle(tmp_path / "bad", models["flat"], *specs, _torch(Flat(seed=7), X[:3]))
    with pytest.raises(GoldenMismatchError, match=r"output 'y' differs from the golden outputs.*litert") as err:
        check_golden(session, bad, verify_bundle(bad), "model.fp32.tflite")
    assert "was not activated" in str(err.value)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(GoldenMismatchError):
        store.install(pack_bundle(bad, tmp_path / "bad.tar"))
    assert store.active_version("m") is None and store.versions("m") == ()


def test_corrupt_tflite_file_is_a_model_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"TFL3 but not really a flatbuffer")
    with pytest.raises(ModelLoadError, match="could not load"):
        LiteRTBackend().load(bad, SessionOptions())


def test_without_ai_edge_litert_the_error_names_the_extra(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    assert not LiteRTBackend().available() and not TfliteRuntimeBackend().available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgectl\[tflite\]'"):
        LiteRTBackend().load(models["flat"], SessionOptions())
    with pytest.raises(MissingDependencyError, match="ai-edge-litert"):
        backend_for("tflite")


def test_litert_is_preferred_and_tflite_runtime_only_offered_when_importable() -> None:
    assert backend_for("tflite").name == "litert"
    try:
        importlib.import_module("tflite_runtime.interpreter")
        importable = True
    except Exception:
        importable = False
    assert TfliteRuntimeBackend().available() is importable


@pytest.mark.skipif(importlib.util.find_spec("tflite_runtime") is None, reason="tflite-runtime is not installed")
def test_legacy_tflite_runtime_is_refused_with_a_reason_or_checked_by_golden(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """tflite-runtime 2.14 wheels are built for numpy 1.x: under numpy 2 they cannot build an interpreter."""
    specs = ([TensorSpec("x", "float32", (-1, 3, 6, 6))], [TensorSpec("y", "float32", (-1, 3))])
    d = _bundle(tmp_path, models["flat8"], *specs, np.zeros((3, 3), np.float32))
    if int(np.__version__.split(".")[0]) >= 2:
        with pytest.raises(ModelLoadError, match="numpy 2") as err:
            TfliteRuntimeBackend().load(d / "model.fp32.tflite", SessionOptions(threads=1))
        assert "ai-edge-litert" in str(err.value)
    else:  # numpy 1: it loads, and outputs that are not the golden ones are refused
        from edgectl.bundle import verify_bundle

        session = TfliteRuntimeBackend().load(d / "model.fp32.tflite", SessionOptions(threads=1))
        with pytest.raises(GoldenMismatchError, match="tflite-runtime"):
            check_golden(session, d, verify_bundle(d), "model.fp32.tflite")
