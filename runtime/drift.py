"""Drift scores of live traffic against the manifest's ``reference_stats`` (DESIGN.md, "Monitoring and drift").

Pure numpy, no I/O: :class:`DriftMonitor` keeps rolling statistics over the last ``window`` rows and computes

- per input channel, the standardised mean shift ``(live mean - reference mean) / reference std``;
- per input, counts of NaN/Inf and of values outside the reference ``[min, max]`` (cumulative);
- per output, the population stability index (PSI) of the value histogram on the reference bin edges, and of the
  top-1 class distribution when the reference has one.

Reference layout::

    {"inputs":  {name: {"channel_axis": 1, "mean": [...], "std": [...], "min": m, "max": M, "count": n}},
     "outputs": {name: {"mean": m, "std": s, "histogram": {"edges": [...], "counts": [...]},
                        "top1_distribution": [...]}}}
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Floor for empty bins, so PSI stays finite (the usual convention).
PSI_EPSILON = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two count (or fraction) vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    e = np.maximum(e / e.sum(), PSI_EPSILON)
    a = np.maximum(a / a.sum(), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class _InputRef:
    axis: int
    mean: np.ndarray
    std: np.ndarray
    low: float
    high: float


@dataclass
class _OutputRef:
    edges: np.ndarray | None
    counts: np.ndarray | None
    top1: np.ndarray | None


@dataclass
class _Window:
    """Per-batch sums kept for the rolling window, and their running totals."""

    items: deque[tuple[int, dict[str, np.ndarray]]] = field(default_factory=deque)
    totals: dict[str, np.ndarray] = field(default_factory=dict)
    rows: int = 0

    def push(self, rows: int, sums: dict[str, np.ndarray], limit: int) -> None:
        self.items.append((rows, sums))
        self.rows += rows
        for key, value in sums.items():
            self.totals[key] = self.totals[key] + value if key in self.totals else value.astype(np.float64)
        while self.rows > limit and len(self.items) > 1:
            old_rows, old = self.items.popleft()
            self.rows -= old_rows
            for key, value in old.items():
                self.totals[key] = self.totals[key] - value


class DriftMonitor:
    """Rolling drift statistics for one model version; thread-safe (updated by the worker, read by /metrics)."""

    def __init__(self, reference: dict[str, Any], *, window: int = 1000) -> None:
        """Raises ValueError when ``reference`` does not follow the documented layout."""
        self.window = max(1, window)
        self.inputs: dict[str, _InputRef] = {}
        self.outputs: dict[str, _OutputRef] = {}
        for name, ref in (reference.get("inputs") or {}).items():
            self.inputs[name] = _InputRef(
                axis=int(ref.get("channel_axis", -1)),
                mean=np.asarray(ref["mean"], dtype=np.float64).ravel(),
                std=np.maximum(np.asarray(ref["std"], dtype=np.float64).ravel(), 1e-12),
                low=float(ref.get("min", -math.inf)),
                high=float(ref.get("max", math.inf)),
            )
        for name, ref in (reference.get("outputs") or {}).items():
            hist = ref.get("histogram") or {}
            top1 = ref.get("top1_distribution")
            self.outputs[name] = _OutputRef(
                edges=np.asarray(hist["edges"], dtype=np.float64) if "edges" in hist else None,
                counts=np.asarray(hist["counts"], dtype=np.float64) if "counts" in hist else None,
                top1=np.asarray(top1, dtype=np.float64) if top1 is not None else None,
            )
        self._window = _Window()
        self.nonfinite: dict[str, int] = dict.fromkeys(self.inputs, 0)
        self.out_of_range: dict[str, int] = dict.fromkeys(self.inputs, 0)
        self._lock = threading.Lock()

    @classmethod
    def from_reference(cls, reference: dict[str, Any] | None, *, window: int) -> DriftMonitor | None:
        """A monitor, or None when the manifest has no (usable) reference statistics."""
        if not reference or not (reference.get("inputs") or reference.get("outputs")):
            return None
        try:
            return cls(reference, window=window)
        except (KeyError, TypeError, ValueError):
            return None

    def observe(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Add one batch (arrays with the batch dimension first)."""
        sums: dict[str, np.ndarray] = {}
        rows = 1
        nonfinite: dict[str, int] = {}
        out_of_range: dict[str, int] = {}
        for name, ref in self.inputs.items():
            x = inputs.get(name)
            if x is None or x.ndim == 0:
                continue
            rows = int(x.shape[0])
            x64 = x.astype(np.float64, copy=False)
            finite = np.isfinite(x64)
            nonfinite[name] = int(x64.size - finite.sum())
            out_of_range[name] = int(np.count_nonzero(finite & ((x64 < ref.low) | (x64 > ref.high))))
            axis = ref.axis % x64.ndim
            if x64.shape[axis] != ref.mean.size:
                continue
            clean = np.where(finite, x64, 0.0)
            other = tuple(i for i in range(x64.ndim) if i != axis)
            sums[f"in:{name}:sum"] = clean.sum(axis=other)
            sums[f"in:{name}:n"] = finite.sum(axis=other).astype(np.float64)
        for name, oref in self.outputs.items():
            y = outputs.get(name)
            if y is None:
                continue
            y64 = y.astype(np.float64, copy=False)
            if oref.edges is not None and oref.edges.size >= 2:
                clipped = np.clip(y64[np.isfinite(y64)], oref.edges[0], oref.edges[-1])
                sums[f"out:{name}:hist"] = np.histogram(clipped, bins=oref.edges)[0].astype(np.float64)
            if oref.top1 is not None and y64.ndim == 2 and y64.shape[1] == oref.top1.size:
                sums[f"out:{name}:top1"] = np.bincount(y64.argmax(axis=1), minlength=oref.top1.size).astype(np.float64)
        with self._lock:
            self._window.push(rows, sums, self.window)
            for name, n in nonfinite.items():
                self.nonfinite[name] += n
            for name, n in out_of_range.items():
                self.out_of_range[name] += n

    def mean_shift(self) -> dict[str, np.ndarray]:
        """Input name -> standardised mean shift per channel over the window."""
        with self._lock:
            totals = dict(self._window.totals)
        out = {}
        for name, ref in self.inputs.items():
            s, n = totals.get(f"in:{name}:sum"), totals.get(f"in:{name}:n")
            if s is None or n is None or not np.all(n > 0):
                continue
            out[name] = (s / n - ref.mean) / ref.std
        return out

    def psi(self) -> dict[tuple[str, str], float]:
        """(output name, "histogram" | "top1") -> PSI of the window against the reference."""
        with self._lock:
            totals = dict(self._window.totals)
        out = {}
        for name, oref in self.outputs.items():
            hist = totals.get(f"out:{name}:hist")
            if hist is not None and oref.counts is not None and hist.sum() > 0:
                out[(name, "histogram")] = psi(oref.counts, hist)
            top1 = totals.get(f"out:{name}:top1")
            if top1 is not None and oref.top1 is not None and top1.sum() > 0:
                out[(name, "top1")] = psi(oref.top1, top1)
        return out

    @property
    def rows(self) -> int:
        return self._window.rows
