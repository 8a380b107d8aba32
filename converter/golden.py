"""Golden outputs and their per-artifact tolerance (what the runtime checks before activating a model).

Tolerance policy — loose enough that another *correct* CPU build passes, tight enough that a wrong runtime fails:

1. ``scale`` = the largest absolute golden output of the artifact (so the bound follows the model's units).
2. ``cross_path_error`` = the largest difference between the backend's normal run and a second, correct
   execution path of the same file: for ONNX, onnxruntime with every graph optimisation off (no fused kernels;
   int8 QDQ runs as dequantize -> float op -> quantize, as builds without int8 kernels do); for other formats,
   the backend without XNNPACK. It is an empirical measure of how far correct builds drift apart.
3. ``atol = max(floor[precision] * scale, 4 * cross_path_error)`` with floors fp32 1e-4, fp16 1e-2, int8 5e-2
   (about six output quantization steps: int8 kernels on ARM and x86 round intermediate tensors differently);
   ``rtol`` is 0 — logits near zero need no relative slack on top.
4. A wrong runtime (a broken kernel, wrong layout, a mismatched numpy ABI) moves outputs by a sizeable part of
   their range; the bound stays below ``MAX_ATOL_FRACTION * scale`` and the report warns when it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgectl.runtime.backends import SessionOptions, backend_for

from .types import ExportedArtifact
from .validate import run_session

FLOORS = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}
CROSS_PATH_FACTOR = 4.0
MAX_ATOL_FRACTION = 0.25


@dataclass
class GoldenEntry:
    """Expected outputs (keyed by the session's output names) and the tolerance for one artifact."""

    outputs: dict[str, np.ndarray]
    tolerance: dict[str, float]
    info: dict[str, Any]


def golden_for(artifact: ExportedArtifact, inputs: dict[str, np.ndarray]) -> GoldenEntry:
    """Run the golden ``inputs`` through the runtime backend and derive the tolerance (see module docstring)."""
    session = backend_for(artifact.format).load(artifact.path, SessionOptions())
    try:
        names = [t.name for t in session.signature.outputs]
        expected = dict(zip(names, run_session(session, inputs), strict=True))
    finally:
        session.close()
    alternative = _second_path(artifact, inputs)
    cross = max(
        float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
        for a, b in zip(expected.values(), alternative, strict=True)
    )
    scale = max(float(np.max(np.abs(v), initial=0.0)) for v in expected.values()) or 1.0
    floor = FLOORS.get(artifact.precision, FLOORS["int8"]) * scale
    atol = max(floor, CROSS_PATH_FACTOR * cross)
    info = {
        "policy": "max(floor*scale, 4*cross_path_error)",
        "scale": scale,
        "floor": floor,
        "cross_path_error": cross,
        "weak": bool(atol > MAX_ATOL_FRACTION * scale),
    }
    return GoldenEntry(outputs=expected, tolerance={"atol": float(f"{atol:.6g}"), "rtol": 0.0}, info=info)


def _second_path(artifact: ExportedArtifact, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of a second correct execution path for the same file (see module docstring, point 2)."""
    if artifact.format == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(artifact.path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        feed = dict(zip([i.name for i in sess.get_inputs()], inputs.values(), strict=True))
        return list(sess.run(names, feed))
    session = backend_for(artifact.format).load(Path(artifact.path), SessionOptions(threads=1, xnnpack=False))
    try:
        return run_session(session, inputs)
    finally:
        session.close()
