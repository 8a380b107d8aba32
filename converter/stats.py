"""Reference statistics of inputs and outputs: the baseline the runtime's drift detection compares live traffic to.

Layout (``manifest.reference_stats``)::

    {"inputs":  {name: {"channel_axis": int | None, "mean": [per channel], "std": [per channel],
                        "min": float, "max": float, "count": int}},
     "outputs": {name: {"mean": float, "std": float, "histogram": {"edges": [...], "counts": [...]},
                        "top1_distribution": [per class] | None}}}

``count`` is the number of samples. With no channel axis, ``mean`` / ``std`` hold one value over everything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgectl.bundle import TensorSpec

HISTOGRAM_BINS = 20
#: Per-feature statistics for flat inputs only up to this many features; beyond it one global value.
MAX_CHANNELS = 4096


def channel_axis(spec: TensorSpec, array: np.ndarray, preprocessing: dict[str, Any] | None) -> int | None:
    """The channel axis of an input: from the preprocessing layout, else a shape heuristic (images: the small
    axis of 1, 3 or 4; flat or sequence inputs: the last axis when it is not huge)."""
    if array.ndim == 4:
        if preprocessing is not None and preprocessing.get("layout") in ("NCHW", "NHWC"):
            return 1 if preprocessing["layout"] == "NCHW" else 3
        if array.shape[1] in (1, 3, 4):
            return 1
        if array.shape[3] in (1, 3, 4):
            return 3
        return None
    if array.ndim in (2, 3) and array.shape[-1] <= MAX_CHANNELS:
        return array.ndim - 1
    return None


def input_stats(
    arrays: dict[str, np.ndarray], specs: list[TensorSpec], preprocessing: dict[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        values = np.asarray(arrays[spec.name], dtype=np.float64)
        axis = channel_axis(spec, values, preprocessing)
        if axis is None:
            mean, std = [float(values.mean())], [float(values.std())]
        else:
            moved = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
            mean, std = moved.mean(axis=0).tolist(), moved.std(axis=0).tolist()
        out[spec.name] = {
            "channel_axis": axis,
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "min": float(values.min()),
            "max": float(values.max()),
            "count": int(values.shape[0]),
        }
    return out


def output_stats(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in outputs.items():
        values = np.asarray(raw, dtype=np.float64)
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        distribution = None
        if values.ndim == 2 and values.shape[1] > 1:
            classes = np.bincount(values.argmax(axis=1), minlength=values.shape[1])
            distribution = (classes / classes.sum()).tolist()
        out[name] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
            "top1_distribution": distribution,
        }
    return out


def reference_stats(
    inputs: dict[str, np.ndarray],
    specs: list[TensorSpec],
    outputs: dict[str, np.ndarray],
    preprocessing: dict[str, Any] | None,
) -> dict[str, Any]:
    """Statistics of the calibration ``inputs`` and of the original model's ``outputs`` (see module docstring)."""
    return {"inputs": input_stats(inputs, specs, preprocessing), "outputs": output_stats(outputs)}
