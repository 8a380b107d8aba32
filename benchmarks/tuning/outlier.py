"""A CNN with an outlier activation channel: the classic way plain int8 breaks.

Large-magnitude "outlier features" in a few channels are a well-documented property of trained networks (Dettmers et
al., LLM.int8(), 2022; Bondarenko et al., 2021). onnxruntime quantizes activations per tensor, so one channel that is
~300x larger than the others sets the scale and the other channels round to almost nothing. Here the outlier is
compensated in the next layer, so the float model is an ordinary one; what breaks is only the int8 version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_outlier_model(path: Path, *, outlier: float = 300.0, seed: int = 0) -> Path:
    """Write the model to ``path``: conv(1->8) with channel 0 scaled by ``outlier``, relu, conv 1x1 (8->8) with
    channel 0's weights divided by ``outlier``, relu, flatten, linear (512->10). Input ``x`` (N, 1, 8, 8)."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    w1[0] *= outlier
    w2 = rng.standard_normal((8, 8, 1, 1)).astype(np.float32)
    w2[:, 0] /= outlier
    w3 = rng.standard_normal((10, 512)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"], name="relu1"),
        helper.make_node("Conv", ["ar", "conv2.weight"], ["b"], name="conv2"),
        helper.make_node("Relu", ["b"], ["br"], name="relu2"),
        helper.make_node("Flatten", ["br"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "outlier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        initializer=[
            numpy_helper.from_array(w, n) for w, n in ((w1, "conv1.weight"), (w2, "conv2.weight"), (w3, "fc.weight"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
