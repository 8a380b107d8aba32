"""A small Prometheus text-format registry (counters, gauges, histograms with labels), thread-safe.

Kept in-house so the device profile needs no client library; the exposition follows the Prometheus text format
0.0.4 (``# HELP``, ``# TYPE``, ``_bucket{le=...}``, ``_sum``, ``_count``).
"""

from __future__ import annotations

import bisect
import math
import os
import threading
import time
from collections.abc import Callable, Iterable

LabelValues = tuple[str, ...]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = labels
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_fmt(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def set(self, *labels: str, value: float) -> None:
        with self._lock:
            self._values[labels] = value

    def remove(self, *labels: str) -> None:
        with self._lock:
            self._values.pop(labels, None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labels: tuple[str, ...] = (), buckets: Iterable[float] = LATENCY_BUCKETS
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._data: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, *labels: str, value: float) -> None:
        idx = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts, total = self._data.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[idx] += 1
            total[0] += value

    def count(self, *labels: str) -> int:
        data = self._data.get(labels)
        return sum(data[0]) if data else 0

    def render(self) -> list[str]:
        lines: list[str] = []
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._data.items())
        for key, (counts, total) in items:
            cumulative = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += n
                le = 'le="' + _fmt(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_fmt(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {cumulative}")
        return lines


class Registry:
    """Holds metrics and renders them; ``collectors`` refresh gauges (memory, queue depth) just before a scrape."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []
        self.collectors: list[Callable[[], None]] = []

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        metric = Counter(name, help_text, labels)
        self._metrics.append(metric)
        return metric

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        metric = Gauge(name, help_text, labels)
        self._metrics.append(metric)
        return metric

    def histogram(
        self, name: str, help_text: str, labels: tuple[str, ...] = (), buckets: Iterable[float] = LATENCY_BUCKETS
    ) -> Histogram:
        metric = Histogram(name, help_text, labels, buckets)
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        for collect in self.collectors:
            collect()
        lines: list[str] = []
        for metric in self._metrics:
            body = metric.render()
            if body:
                lines += metric.header() + body
        return "\n".join(lines) + "\n"


def process_stats() -> tuple[float, float]:
    """(resident memory in bytes, user+system CPU seconds) of this process, from ``/proc`` or ``os.times``."""
    rss = 0.0
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            rss = float(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        pass
    times = os.times()
    return rss, times.user + times.system


class RuntimeMetrics:
    """The daemon's metrics, by model / version / outcome."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.counter(
            "edgectl_requests_total",
            "Inference requests by model, version and outcome.",
            ("model", "version", "outcome"),
        )
        self.latency = r.histogram(
            "edgectl_request_duration_seconds",
            "Inference request latency (decode, queue, run, encode).",
            ("model", "version"),
        )
        self.queue_depth = r.gauge("edgectl_queue_depth", "Requests waiting in the model's queue.", ("model",))
        self.queue_wait = r.histogram("edgectl_queue_wait_seconds", "Time a request waited in the queue.", ("model",))
        self.batch_size = r.histogram(
            "edgectl_batch_size", "Rows per executed batch.", ("model", "version"), buckets=BATCH_BUCKETS
        )
        self.run_time = r.histogram(
            "edgectl_inference_duration_seconds", "Backend run time per batch.", ("model", "version")
        )
        self.load_time = r.gauge(
            "edgectl_model_load_seconds", "Time to verify, load, check and warm.", ("model", "version")
        )
        self.ready = r.gauge("edgectl_model_ready", "1 when the model serves traffic.", ("model", "version"))
        self.load_failures = r.counter("edgectl_model_load_failures_total", "Failed loads / swaps.", ("model",))
        self.http_refused = r.counter(
            "edgectl_http_refused_total", "Requests refused before routing (auth, rate, size).", ("reason",)
        )
        self.drift_psi = r.gauge(
            "edgectl_drift_psi",
            "Population stability index of live outputs vs the manifest's reference (histogram or top-1 classes).",
            ("model", "version", "output", "kind"),
        )
        self.drift_shift = r.gauge(
            "edgectl_drift_mean_shift",
            "Standardised mean shift of a live input channel: (live mean - reference mean) / reference std.",
            ("model", "version", "input", "channel"),
        )
        self.drift_shift_max = r.gauge(
            "edgectl_drift_mean_shift_max",
            "Largest absolute standardised mean shift over channels.",
            ("model", "version", "input"),
        )
        self.drift_rows = r.gauge(
            "edgectl_drift_window_rows", "Rows in the rolling drift window.", ("model", "version")
        )
        self.drift_nonfinite = r.gauge(
            "edgectl_drift_nonfinite_values",
            "NaN/Inf input values seen by the served version.",
            ("model", "version", "input"),
        )
        self.drift_range = r.gauge(
            "edgectl_drift_out_of_range_values",
            "Input values outside the reference [min, max].",
            ("model", "version", "input"),
        )
        self.rss = r.gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        self.cpu = r.gauge("process_cpu_seconds_total", "User and system CPU time in seconds.")
        self.start_time = r.gauge("process_start_time_seconds", "Start time of the process (unix seconds).")
        self.start_time.set(value=time.time())
        r.collectors.append(self._collect_process)

    def _collect_process(self) -> None:
        rss, cpu = process_stats()
        self.rss.set(value=rss)
        self.cpu.set(value=cpu)
