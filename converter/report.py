"""The conversion report: one row per artifact, shown as a rich table and written as JSON and Markdown.

Quality is "accuracy" (top-1 against labels) when labels were given, else "agreement" (top-1 agreement with the
original model). ``drop`` is the reference value minus the artifact's, in points. Speed and size are also given as
ratios to the fp32 ONNX file measured in the same run, so numbers from noisy machines stay comparable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from .validate import MEMORY_METHOD, ArtifactMetrics

OK, FLAGGED, FAILED = "ok", "flagged", "failed"


@dataclass
class ArtifactRow:
    """One artifact's line in the report. ``shipped`` is False for the fp32 baseline when it was not requested."""

    path: str
    format: str
    precision: str
    variant: str
    shipped: bool
    status: str
    quality: float | None
    drop: float | None
    metrics: ArtifactMetrics
    latency_ratio: float | None = None
    size_ratio: float | None = None
    golden_atol: float | None = None
    note: str = ""


@dataclass
class ConversionReport:
    """Everything a person needs to judge a conversion. ``passed`` is False when a tolerance was missed."""

    name: str
    version: int
    source: str
    metric: str  # "accuracy" | "agreement" | "error-only"
    reference_quality: float | None
    rows: list[ArtifactRow]
    max_accuracy_drop: float | None
    warn_accuracy_drop: float
    export_check_error: float
    validation_samples: int
    warnings: list[str] = field(default_factory=list)
    memory_method: str = MEMORY_METHOD
    #: Extra markdown sections from optional steps (pruning before/after, the accuracy-tuning candidates).
    sections: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.status != FAILED for row in self.rows)

    def row(self, variant: str, fmt: str = "onnx") -> ArtifactRow:
        for row in self.rows:
            if row.variant == variant and row.format == fmt:
                return row
        raise KeyError(f"no {fmt} {variant} artifact in the report")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    def to_markdown(self) -> str:
        lines = [
            f"# Conversion report: {self.name}-{self.version}",
            "",
            f"- source: `{self.source}`",
            f"- quality metric: {self.metric} on {self.validation_samples} validation samples"
            + (f" (original model: {self.reference_quality:.2f}%)" if self.reference_quality is not None else ""),
            f"- export check (fp32 ONNX vs original, max abs error): {self.export_check_error:.3g}",
            f"- max accuracy drop allowed: {'not set' if self.max_accuracy_drop is None else self.max_accuracy_drop}",
            f"- result: {'PASSED' if self.passed else 'FAILED: an artifact missed the accuracy tolerance'}",
            "",
            "| artifact | shipped | status | "
            + f"{self.metric} % | drop (pts) | max err | mean err | p50 ms | p95 ms | latency x fp32 | size KiB | "
            "size x fp32 | peak MB | golden atol | note |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in self.rows:
            m = r.metrics
            lines.append(
                f"| {r.path} | {'yes' if r.shipped else 'no'} | {r.status.upper()} | {_f(r.quality, 2)} | "
                f"{_f(r.drop, 2)} | {m.max_abs_error:.3g} | {m.mean_abs_error:.3g} | {m.latency_ms_p50:.3f} | "
                f"{m.latency_ms_p95:.3f} | {_f(r.latency_ratio, 2)} | {m.size_bytes / 1024:.1f} | "
                f"{_f(r.size_ratio, 2)} | {_f(m.peak_memory_mb, 1)} | {_f(r.golden_atol, 3, 'g')} | {r.note} |"
            )
        lines += [
            "",
            f"Latency: batch 1, {self._threads()} thread(s), on the converting machine.",
            f"Memory: {self.memory_method}.",
        ]
        for section in self.sections:
            lines += ["", section.rstrip("\n")]
        if self.warnings:
            lines += ["", "## Warnings", "", *[f"- **{w}**" for w in self.warnings]]
        return "\n".join(lines) + "\n"

    def _threads(self) -> int:
        return self.rows[0].metrics.latency_threads if self.rows else 1

    def render(self, console: Console) -> None:
        """Print the table (and warnings, in red) to ``console``."""
        table = Table(title=f"{self.name}-{self.version}: {self.metric} on {self.validation_samples} samples")
        quality = {"accuracy": "acc %", "agreement": "agree %"}.get(self.metric, "quality")
        for col in ("artifact", "status", quality, "drop", "max err", "p50 ms", "speed", "KiB", "size", "peak MB"):
            table.add_column(col, justify="left" if col in ("artifact", "status") else "right", no_wrap=True)
        for r in self.rows:
            m = r.metrics
            style = {OK: "green", FLAGGED: "bold yellow", FAILED: "bold red"}[r.status]
            label = r.path.removeprefix("model.") + ("" if r.shipped else " (base)")
            table.add_row(
                label,
                f"[{style}]{r.status.upper()}[/]",
                _f(r.quality, 2),
                _f(r.drop, 2),
                f"{m.max_abs_error:.3g}",
                f"{m.latency_ms_p50:.3f}",
                _x(r.latency_ratio),
                f"{m.size_bytes / 1024:.1f}",
                _x(r.size_ratio),
                _f(m.peak_memory_mb, 1),
            )
        console.print(table)
        console.print("speed and size are ratios to the fp32 ONNX file (lower is better); latency at batch 1.")
        if self.sections:
            from rich.markdown import Markdown

            for section in self.sections:
                console.print(Markdown(section))
        for warning in self.warnings:
            console.print(f"[bold red]WARNING:[/] {warning}")


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _f(value: float | None, digits: int, kind: str = "f") -> str:
    return "-" if value is None else f"{value:.{digits}{kind}}"
