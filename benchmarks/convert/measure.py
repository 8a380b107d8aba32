"""Measuring ONNX variants the way the device runs them: edgectl's onnxruntime backend at a fixed thread count."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgectl.runtime.backends import SessionOptions
from edgectl.runtime.backends.onnx import OnnxBackend, OnnxSession

from benchmarks.common import Latency, interleaved_latency

#: fp32 top-1 probability at or above which a validation input counts as "confident" in the diagnostics.
CONFIDENT = 0.5
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


def open_session(path: Path, threads: int) -> OnnxSession:
    """An onnxruntime session through edgectl's backend, CPU provider only, ``threads`` intra-op threads."""
    return OnnxBackend().load(path, SessionOptions(threads=threads, xnnpack=False))


def predict(session: OnnxSession, inputs: np.ndarray, *, batch: int = 32) -> np.ndarray:
    """Run ``inputs`` through the session's single input in batches; return its first output, concatenated."""
    name = session.signature.inputs[0].name
    output = session.signature.outputs[0].name
    return np.concatenate([session.run({name: inputs[i : i + batch]})[output] for i in range(0, len(inputs), batch)])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``other`` against ``reference``, in dB (higher is closer)."""
    noise = float(np.sum((reference - other) ** 2))
    return float("inf") if noise == 0 else 10.0 * float(np.log10(float(np.sum(reference**2)) / noise))


@dataclass(frozen=True)
class Quality:
    """How one variant's outputs compare with the truth (if labelled) and with the fp32 ONNX outputs."""

    accuracy: float | None
    agreement: float
    agreement_confident: float | None
    agreement_unconfident: float | None
    confident_samples: int
    top1_in_fp32_top5: float
    sqnr_db: float

    def as_dict(self) -> dict[str, Any]:
        def pct(x: float | None) -> float | None:
            return None if x is None else round(100.0 * x, 2)

        return {
            "accuracy_pct": pct(self.accuracy),
            "agreement_pct": pct(self.agreement),
            "agreement_confident_pct": pct(self.agreement_confident),
            "agreement_unconfident_pct": pct(self.agreement_unconfident),
            "confident_samples": self.confident_samples,
            "top1_in_fp32_top5_pct": pct(self.top1_in_fp32_top5),
            # Identical outputs have infinite SQNR, which JSON cannot hold: written as null.
            "logits_sqnr_db": round(self.sqnr_db, 2) if np.isfinite(self.sqnr_db) else None,
        }


def quality(logits: np.ndarray, fp32_logits: np.ndarray, labels: np.ndarray | None) -> Quality:
    """Compare ``logits`` with the fp32 logits; split agreement by fp32 confidence (top-1 prob ≥ :data:`CONFIDENT`)."""
    top1, ref_top1 = logits.argmax(axis=1), fp32_logits.argmax(axis=1)
    agree = top1 == ref_top1
    confident = softmax(fp32_logits).max(axis=1) >= CONFIDENT
    top5 = np.argsort(-fp32_logits, axis=1)[:, :5]
    return Quality(
        accuracy=None if labels is None else float(np.mean(top1 == labels)),
        agreement=float(np.mean(agree)),
        agreement_confident=float(np.mean(agree[confident])) if confident.any() else None,
        agreement_unconfident=float(np.mean(agree[~confident])) if (~confident).any() else None,
        confident_samples=int(confident.sum()),
        top1_in_fp32_top5=float(np.mean([t in row for t, row in zip(top1, top5, strict=True)])),
        sqnr_db=sqnr_db(fp32_logits, logits),
    )


def latencies(
    sessions: Mapping[str, OnnxSession], sample: np.ndarray, *, rounds: int, iterations: int, warmup: int
) -> dict[str, Latency]:
    """Batch-1 latency of every session on the same input, interleaved A/B/A/B."""
    calls = {}
    for variant, session in sessions.items():
        feed = {session.signature.inputs[0].name: sample}
        calls[variant] = lambda session=session, feed=feed: session.run(feed)
    return interleaved_latency(calls, rounds=rounds, iterations=iterations, warmup=warmup)


def op_census(path: Path) -> dict[str, Any]:
    """Which compute ops of a QDQ model run in int8 and which stay float.

    An op counts as quantized when every non-constant input comes from a DequantizeLinear (onnxruntime then fuses
    DQ -> op -> Q into an integer kernel); otherwise it runs in float.

    Returns:
        ``{"quantized": {op: count}, "float": {op: count}, "initializer_bytes": {dtype: bytes}, "graph_bytes": int}``.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {init.name for init in graph.initializer}
    producer = {out: node.op_type for node in graph.node for out in node.output}
    quantized: Counter[str] = Counter()
    floating: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type in _QDQ or node.op_type == "Constant":
            continue
        data_inputs = [name for name in node.input if name and name not in constants]
        if data_inputs and all(producer.get(name) == "DequantizeLinear" for name in data_inputs):
            quantized[node.op_type] += 1
        else:
            floating[node.op_type] += 1
    by_type: Counter[str] = Counter()
    for init in graph.initializer:
        by_type[onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name] += numpy_helper.to_array(init).nbytes
    return {
        "quantized": dict(sorted(quantized.items())),
        "float": dict(sorted(floating.items())),
        "initializer_bytes": dict(sorted(by_type.items())),
        # Everything else in the file: node and tensor names, attributes, Q/DQ nodes — a fixed cost per layer.
        "graph_bytes": path.stat().st_size - sum(by_type.values()),
    }


def torch_thread_probe(model: Any, inputs: np.ndarray, *, batch: int = 8) -> dict[str, Any]:
    """Time the torch model's forward over ``inputs`` with 1 thread and with torch's default, back to back.

    The converter's reference step runs the original model with torch's default thread count; on a machine whose
    cores are busy, OpenMP threads waiting on each other can make that slower than one thread. This measures it under
    the same conditions as the conversion. The default thread count is restored afterwards.
    """
    import torch

    default = torch.get_num_threads()
    tensor = torch.from_numpy(inputs)
    seconds: dict[str, float] = {}
    try:
        for threads in (1, default):
            torch.set_num_threads(threads)
            start = time.perf_counter()
            with torch.no_grad():
                for i in range(0, len(tensor), batch):
                    model(tensor[i : i + batch])
            seconds[f"threads_{threads}_s"] = round(time.perf_counter() - start, 3)
    finally:
        torch.set_num_threads(default)
    return {"inputs": len(inputs), "default_threads": default, **seconds}
