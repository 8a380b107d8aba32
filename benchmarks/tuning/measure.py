"""Measuring helpers for the tuning benchmark: export, accuracy / agreement, size, interleaved latency."""

from __future__ import annotations

import gzip
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgectl.runtime.backends import SessionOptions, load
from torch import nn

from benchmarks.common import interleaved_latency


def export_onnx(model: nn.Module, example: np.ndarray, path: Path) -> Path:
    """Export ``model`` with a dynamic batch dimension (torch.onnx, dynamo), as edgectl's exporter does."""
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.from_numpy(example[:2]),),
            str(path),
            dynamo=True,
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            external_data=False,
            verbose=False,
        )
    return path


def onnx_outputs(path: Path, x: np.ndarray, *, batch: int = 50) -> np.ndarray:
    """The first output of the ONNX model on ``x``, run in batches with the runtime's own backend."""
    session = load(path, SessionOptions(threads=1))
    try:
        return np.concatenate([session.run({"x": x[i : i + batch]})["y"] for i in range(0, len(x), batch)])
    finally:
        session.close()


def torch_outputs(model: nn.Module, x: np.ndarray, *, batch: int = 50) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


def top1_percent(logits: np.ndarray, target: np.ndarray) -> float:
    """Top-1 accuracy (``target`` = labels) or agreement (``target`` = reference logits), in percent."""
    expected = target if target.ndim == 1 else target.argmax(axis=1)
    return float(np.mean(logits.argmax(axis=1) == expected) * 100.0)


def file_sizes(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}


@dataclass
class Row:
    """One variant of one model: what a person compares."""

    model: str
    variant: str
    path: Path
    quality: float
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "quality_percent": round(self.quality, 2),
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "macs": self.macs,
            **file_sizes(self.path),
            "note": self.note,
        }


def latencies(rows: list[Row], inputs: dict[str, np.ndarray], *, rounds: int, iterations: int) -> dict[str, Any]:
    """Interleaved p50 latency of every row at every batch size in ``inputs`` (name -> one batch), one thread."""
    sessions = {row.variant: load(row.path, SessionOptions(threads=1)) for row in rows}
    out: dict[str, Any] = {row.variant: {} for row in rows}
    try:
        for batch_name, x in inputs.items():
            calls = {name: (lambda s=s, x=x: s.run({"x": x})) for name, s in sessions.items()}
            measured = interleaved_latency(calls, rounds=rounds, iterations=iterations, warmup=3)
            for name, lat in measured.items():
                out[name][batch_name] = lat.as_dict()
    finally:
        for s in sessions.values():
            s.close()
    return out
