"""Bundles of the benchmark models: the zoo's digits CNN and EfficientNet-Lite0, exported to ONNX (dynamic batch),
with golden outputs computed by onnxruntime, packed as the converter would ship them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgectl.bundle import Artifact, Manifest, TensorSpec, pack_bundle, save_golden, write_manifest


@dataclass(frozen=True)
class BenchModel:
    name: str
    tar: Path
    onnx: Path
    sample: np.ndarray  # one input example, batch of 1


def _export(model: object, shape: tuple[int, ...], path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes are not ours to fix
        torch.onnx.export(
            model,  # type: ignore[arg-type]
            (torch.zeros(shape),),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )


def _bundle(root: Path, name: str, model: object, golden_x: np.ndarray, classes: int) -> BenchModel:
    import onnxruntime as ort

    d = root / f"{name}-1"
    d.mkdir(parents=True)
    _export(model, (1, *golden_x.shape[1:]), d / "model.onnx")
    (y,) = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": golden_x})
    save_golden(d / "golden.npz", {"x": golden_x}, {"model.onnx": {"logits": y}})
    manifest = Manifest(
        name=name,
        version=1,
        inputs=[TensorSpec("x", "float32", (-1, *golden_x.shape[1:]))],
        outputs=[TensorSpec("logits", "float32", (-1, classes))],
        artifacts=[Artifact(path="model.onnx", format="onnx", precision="fp32")],
    )
    write_manifest(d, manifest)
    return BenchModel(name, pack_bundle(d, root / f"{name}-1.tar"), d / "model.onnx", golden_x[:1].copy())


def build_bundles(root: Path) -> list[BenchModel]:
    """Export and pack ``digits`` and ``efficientnet-lite0`` under ``root``."""
    from benchmarks.common import digits_cnn, efficientnet_lite0, photo_crops

    digits = digits_cnn()
    photos = photo_crops(4)
    return [
        _bundle(root, "digits", digits.model, digits.validation[:8], 10),
        _bundle(root, "efficientnet-lite0", efficientnet_lite0(), photos, 1000),
    ]
