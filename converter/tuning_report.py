"""The accuracy-aware tuning report: every candidate tried, the per-layer sensitivity, the choice.

Pure data and rendering (no ONNX, no onnxruntime), so the CLI, the manifest and the error message all show the
same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .profiles import CalibrationMethod


@dataclass(frozen=True, kw_only=True)
class QuantSettings:
    """One way to quantize: the knobs the tuner turns. ``float_nodes``: ONNX node names kept in float;
    ``float_layers``: the layer groups they come from (for people; not part of the settings' identity)."""

    calibration: CalibrationMethod = CalibrationMethod.MINMAX
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    float_nodes: tuple[str, ...] = ()
    float_layers: tuple[str, ...] = field(default=(), compare=False)

    def label(self) -> str:
        granularity = "per-channel" if self.per_channel else "per-tensor"
        base = f"int8 {self.calibration} {granularity}"
        if not self.float_nodes:
            return base
        names = self.float_layers or self.float_nodes
        if len(names) <= 2:
            return f"{base}, float: {', '.join(names)}"
        return f"{base}, {len(names)} layer groups float ({len(self.float_nodes)} nodes)"

    def to_json(self) -> dict[str, Any]:
        return {
            "calibration": str(self.calibration),
            "per_channel": self.per_channel,
            "activation_type": self.activation_type,
            "weight_type": self.weight_type,
            "float_nodes": list(self.float_nodes),
            "float_layers": list(self.float_layers),
        }


@dataclass(frozen=True, kw_only=True)
class Metrics:
    """What ``evaluate(onnx_path)`` measures. ``accuracy`` is in percent (0–100): accuracy on labels, or top-1
    agreement with the fp32 model when there are no labels. ``latency_ms``: median single-batch latency.
    ``error``: optional mean squared difference from the fp32 model's outputs — a finer signal than top-1 on a few
    hundred samples, used to rank layer sensitivity when present."""

    accuracy: float
    latency_ms: float
    error: float | None = None


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One model the tuner built and measured. ``stage`` says why it was tried."""

    stage: str
    settings: QuantSettings | None  # None: the fp32 reference
    accuracy: float
    latency_ms: float
    error: float | None
    size_bytes: int
    gzip_bytes: int
    drop: float
    meets: bool
    speedup_vs_fp32: float

    @property
    def label(self) -> str:
        return "fp32 (reference)" if self.settings is None else self.settings.label()

    @property
    def slower_than_fp32(self) -> bool:
        return self.settings is not None and self.speedup_vs_fp32 < 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "label": self.label,
            "settings": None if self.settings is None else self.settings.to_json(),
            "accuracy": round(self.accuracy, 4),
            "latency_ms": round(self.latency_ms, 4),
            "output_mse": self.error,
            "size_bytes": self.size_bytes,
            "gzip_bytes": self.gzip_bytes,
            "drop": round(self.drop, 4),
            "meets_tolerance": self.meets,
            "speedup_vs_fp32": round(self.speedup_vs_fp32, 3),
            "slower_than_fp32": self.slower_than_fp32,
        }


@dataclass(frozen=True, kw_only=True)
class Sensitivity:
    """One layer group's effect: accuracy of the otherwise-int8 model when only this group stays float, and how much
    the output error shrinks (``error_reduction``: 1 − error_when_float / error_all_int8; ``None`` when unmeasured)."""

    layer: str
    op_type: str
    nodes: int
    accuracy_when_float: float
    gain: float
    error_reduction: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "op_type": self.op_type,
            "nodes": self.nodes,
            "accuracy_when_float": round(self.accuracy_when_float, 4),
            "gain": round(self.gain, 4),
            "error_reduction": None if self.error_reduction is None else round(self.error_reduction, 4),
        }


@dataclass
class TuningReport:
    tolerance: str
    baseline_accuracy: float
    allowed_drop: float
    candidates: list[Candidate] = field(default_factory=list)
    sensitivity: list[Sensitivity] = field(default_factory=list)
    chosen: Candidate | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "baseline_accuracy": round(self.baseline_accuracy, 4),
            "allowed_drop": round(self.allowed_drop, 4),
            "candidates": [c.to_json() for c in self.candidates],
            "sensitivity": [s.to_json() for s in self.sensitivity],
            "chosen": None if self.chosen is None else self.chosen.to_json(),
        }

    def to_markdown(self) -> str:
        """The candidates table (and the sensitivity ranking when one was computed)."""
        lines = [
            f"Accuracy tolerance {self.tolerance}: baseline {self.baseline_accuracy:.2f}%, "
            f"allowed drop {self.allowed_drop:.2f} points.",
            "",
            "| stage | candidate | accuracy % | drop | latency ms | vs fp32 | size KiB | meets |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for c in self.candidates:
            mark = "**chosen**" if c is self.chosen else ("yes" if c.meets else "no")
            speed = f"{c.speedup_vs_fp32:.2f}×" + (" (slower)" if c.slower_than_fp32 else "")
            lines.append(
                f"| {c.stage} | {c.label} | {c.accuracy:.2f} | {c.drop:+.2f} | {c.latency_ms:.3f} | {speed} "
                f"| {c.size_bytes / 1024:.1f} | {mark} |"
            )
        if self.sensitivity:
            lines += [
                "",
                "Per-layer sensitivity (keeping one layer group in float, most sensitive first):",
                "",
                "| layer | ops | nodes | accuracy % when float | gain | output error removed |",
                "| --- | --- | ---: | ---: | ---: | ---: |",
            ]
            lines += [
                f"| {s.layer} | {s.op_type} | {s.nodes} | {s.accuracy_when_float:.2f} | {s.gain:+.2f} | "
                + ("—" if s.error_reduction is None else f"{100 * s.error_reduction:.1f}%")
                + " |"
                for s in self.sensitivity
            ]
        return "\n".join(lines) + "\n"
