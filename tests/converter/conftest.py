"""Fixtures for the converter tests: tiny models saved in every input form, and tiny data sets."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # the factory tests import 'converter_tiny_models:build_cnn'
    sys.path.insert(0, str(HERE))

from converter_tiny_models import build_cnn, build_mlp  # noqa: E402

CNN_SHAPE = (3, 16, 16)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CNN as TorchScript, .pt2, state dict and ONNX; the MLP as TorchScript; data sets beside them."""
    import torch

    root = tmp_path_factory.mktemp("models")
    cnn, mlp = build_cnn(), build_mlp()
    rng = np.random.default_rng(0)
    # Per-sample colour offsets make the untrained CNN's decisions differ between samples.
    images = (rng.standard_normal((48, *CNN_SHAPE)) * 0.5 + rng.normal(0.0, 1.5, (48, 3, 1, 1))).astype(np.float32)
    example = torch.from_numpy(images[:2])
    features = rng.standard_normal((40, 16)).astype(np.float32)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch but still a supported input: users have .pt files to convert.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* deprecated.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        torch.jit.trace(cnn, example).save(str(root / "cnn.pt"))
        torch.jit.trace(mlp, torch.from_numpy(features[:2])).save(str(root / "mlp.pt"))
        program = torch.export.export(cnn, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(root / "cnn.pt2"))
        torch.onnx.export(
            cnn,
            (example,),
            str(root / "cnn.onnx"),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    torch.save(cnn.state_dict(), str(root / "cnn.pth"))
    with torch.no_grad():
        cnn_labels = cnn(torch.from_numpy(images)).argmax(1).numpy()
    np.savez(root / "calib.npz", input=images)
    np.savez(root / "calib_image.npz", image=images)
    np.save(root / "labels.npy", cnn_labels)
    np.savez(root / "mlp.npz", features)
    return root
