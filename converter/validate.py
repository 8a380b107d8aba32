"""Step 4: measure every artifact with the runtime's own backend — what is measured is what will run.

For each artifact: top-1 accuracy (with labels) or top-1 agreement with the original model, max / mean absolute
error against the original's outputs, latency p50 / p95 at a fixed thread count on this machine, file size, and
peak memory (RSS high-water mark of a fresh subprocess that imports the backend, loads the model and runs it once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgectl.runtime.backends import SessionOptions, backend_for

from .types import ExportedArtifact

MEMORY_METHOD = (
    "peak RSS (VmHWM) of a fresh Python subprocess that imports the runtime backend, loads the artifact and runs "
    "one batch-1 inference; model_mb is that peak minus the RSS just before loading"
)
WARMUP_RUNS = 3

# VmHWM / VmRSS from /proc: ru_maxrss would include the (large, torch-laden) parent image the child forked from.
_MEMORY_PROBE = """
import json, sys
from pathlib import Path
import numpy as np
from edgectl.runtime.backends import SessionOptions, backend_for
def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))
path, fmt, feed = sys.argv[1], sys.argv[2], sys.argv[3]
with np.load(feed, allow_pickle=False) as data:
    arrays = [data[k] for k in data.files]
before = status("VmRSS")
session = backend_for(fmt).load(Path(path), SessionOptions(threads=1))
names = [t.name for t in session.signature.inputs]
session.run(dict(zip(names, arrays)))
print(json.dumps({"before_kb": before, "peak_kb": status("VmHWM")}))
"""


@dataclass
class ArtifactMetrics:
    """What validation measured for one artifact. Percentages are 0-100; errors are against the original."""

    samples: int
    accuracy: float | None
    agreement: float | None
    max_abs_error: float
    mean_abs_error: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_threads: int
    size_bytes: int
    peak_memory_mb: float | None
    model_memory_mb: float | None
    backend: str

    def to_manifest(self) -> dict[str, Any]:
        """Manifest layout: quality numbers at the top level; run-to-run varying ones under latency_ms / memory."""
        return {
            "samples": self.samples,
            "accuracy": self.accuracy,
            "agreement": self.agreement,
            "max_abs_error": self.max_abs_error,
            "mean_abs_error": self.mean_abs_error,
            "size_bytes": self.size_bytes,
            "backend": self.backend,
            "latency_ms": {"p50": self.latency_ms_p50, "p95": self.latency_ms_p95, "threads": self.latency_threads},
            "memory": {"peak_mb": self.peak_memory_mb, "model_mb": self.model_memory_mb},
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def feed_for(session: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs keyed by the session's own names: by name when they match, else by position (TFLite renames)."""
    names = [t.name for t in session.signature.inputs]
    if set(names) == set(batch):
        return batch
    return dict(zip(names, batch.values(), strict=True))


def run_session(session: Any, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs in the session's signature order; splits the batch when the model has a fixed batch size."""
    feed = feed_for(session, batch)
    fixed = session.signature.inputs[0].shape[0] if session.signature.inputs[0].shape else -1
    rows = next(iter(feed.values())).shape[0]
    if fixed <= 0 or fixed == rows:
        result = session.run(feed)
        return [result[t.name] for t in session.signature.outputs]
    if rows % fixed:
        raise ValueError(f"batch of {rows} cannot be split into the model's fixed batch of {fixed}")
    parts = [run_session(session, {k: v[i : i + fixed] for k, v in feed.items()}) for i in range(0, rows, fixed)]
    return [np.concatenate(chunks) for chunks in zip(*parts, strict=True)]


def top1(values: np.ndarray) -> np.ndarray | None:
    """Class indices for classification-like outputs (N, C>1); None when the output has no class axis."""
    if values.ndim < 2 or values.shape[-1] < 2:
        return None
    return np.asarray(values.reshape(values.shape[0], -1, values.shape[-1])[:, 0, :].argmax(axis=-1))


def validate_artifact(
    artifact: ExportedArtifact,
    *,
    batches: list[dict[str, np.ndarray]],
    reference: list[list[np.ndarray]],
    labels: np.ndarray | None,
    latency_threads: int,
    latency_runs: int,
    measure_memory: bool,
    on_batch: Callable[[], None] | None = None,
) -> ArtifactMetrics:
    """Run ``artifact`` over ``batches`` with its runtime backend and compare with ``reference`` (per batch).

    Returns the metrics; raises the backend's typed errors when the artifact cannot be loaded.
    """
    backend = backend_for(artifact.format)
    session = backend.load(artifact.path, SessionOptions())
    try:
        outputs = []
        for batch in batches:
            outputs.append(run_session(session, batch))
            if on_batch is not None:
                on_batch()
    finally:
        session.close()
    got = [np.concatenate(parts) for parts in zip(*outputs, strict=True)]
    want = [np.concatenate(parts) for parts in zip(*reference, strict=True)]
    errors = [np.abs(g.astype(np.float64) - w.astype(np.float64)) for g, w in zip(got, want, strict=True)]
    accuracy = agreement = None
    got_top1, want_top1 = top1(got[0]), top1(want[0])
    if got_top1 is not None and want_top1 is not None:
        agreement = float(np.mean(got_top1 == want_top1) * 100.0)
        if labels is not None:
            accuracy = float(np.mean(got_top1 == labels[: got_top1.shape[0]]) * 100.0)
    single = {k: v[:1] for k, v in batches[0].items()}
    p50, p95 = measure_latency(artifact, single, threads=latency_threads, runs=latency_runs)
    peak, model_mb = measure_memory_mb(artifact, single) if measure_memory else (None, None)
    return ArtifactMetrics(
        samples=int(got[0].shape[0]),
        accuracy=accuracy,
        agreement=agreement,
        max_abs_error=float(max(e.max(initial=0.0) for e in errors)),
        mean_abs_error=float(np.mean([e.mean() for e in errors])),
        latency_ms_p50=p50,
        latency_ms_p95=p95,
        latency_threads=latency_threads,
        size_bytes=artifact.path.stat().st_size,
        peak_memory_mb=peak,
        model_memory_mb=model_mb,
        backend=backend.name,
    )


def accuracy_of(outputs: list[np.ndarray], labels: np.ndarray) -> float | None:
    """Top-1 accuracy (0-100) of the first output against ``labels``; None without a class axis."""
    pred = top1(outputs[0])
    return None if pred is None else float(np.mean(pred == labels[: pred.shape[0]]) * 100.0)


def measure_latency(
    artifact: ExportedArtifact, batch: dict[str, np.ndarray], *, threads: int, runs: int
) -> tuple[float, float]:
    """(p50, p95) milliseconds of single-batch inference at ``threads`` threads, after a short warm-up."""
    session = backend_for(artifact.format).load(artifact.path, SessionOptions(threads=threads))
    try:
        feed = feed_for(session, batch)
        for _ in range(WARMUP_RUNS):
            session.run(feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(feed)
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        session.close()
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def measure_memory_mb(artifact: ExportedArtifact, batch: dict[str, np.ndarray]) -> tuple[float | None, float | None]:
    """(peak RSS MB, MB added by loading + running) in a fresh subprocess; (None, None) where the probe cannot
    run (no /proc, e.g. macOS) or fails."""
    if not Path("/proc/self/status").exists():
        return None, None
    with tempfile.TemporaryDirectory(prefix="edgectl-mem-") as tmp:
        feed = Path(tmp) / "feed.npz"
        with open(feed, "wb") as fh:
            np.savez(fh, *batch.values())
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _MEMORY_PROBE, str(artifact.path), artifact.format, str(feed)],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None, None
    if proc.returncode != 0:
        return None, None
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, None
    peak_kb, before_kb = float(data["peak_kb"]), float(data["before_kb"])
    return round(peak_kb / 1024.0, 1), round(max(0.0, peak_kb - before_kb) / 1024.0, 1)
