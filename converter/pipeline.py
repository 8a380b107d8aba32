"""The conversion pipeline: load -> data -> export -> quantize -> validate -> gate -> package.

Each step is one small class with a ``name`` and ``run(ctx)`` (``steps_model.py``: load, data, export, quantize;
``steps_result.py``: validate, gate, package); they share one :class:`ConversionContext` (``context.py``).
Steps can be inserted, e.g. ``pipeline.insert_before("export", PruneStep())`` or wrapped
(``pipeline.replace("quantize", TunedQuantizeStep(...))``). :func:`convert` is the public entry point.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from edgectl.bundle import Manifest

from .config import ConvertConfig
from .context import ConversionContext, Step, _need, bundle_path, variant_of
from .package import output_paths
from .prune_step import PruneStep
from .report import ConversionReport
from .steps_model import DataStep, ExportStep, LoadStep, QuantizeStep, quantization_config
from .steps_result import GateStep, PackageStep, ValidateStep, build_report
from .tuning_step import TunedQuantizeStep, TuningReportStep

__all__ = [
    "ConversionContext",
    "ConvertResult",
    "DataStep",
    "ExportStep",
    "GateStep",
    "LoadStep",
    "PackageStep",
    "Pipeline",
    "QuantizeStep",
    "Step",
    "ValidateStep",
    "build_report",
    "bundle_path",
    "convert",
    "default_pipeline",
    "quantization_config",
    "variant_of",
]


class Pipeline:
    """An ordered list of steps; later helpers insert theirs by name."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)

    def _index(self, name: str) -> int:
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise KeyError(f"no step named {name!r}; steps: {[s.name for s in self.steps]}")

    def insert_before(self, name: str, step: Step) -> None:
        self.steps.insert(self._index(name), step)

    def insert_after(self, name: str, step: Step) -> None:
        self.steps.insert(self._index(name) + 1, step)

    def replace(self, name: str, step: Step) -> None:
        self.steps[self._index(name)] = step

    def run(self, ctx: ConversionContext) -> None:
        for step in self.steps:
            step.run(ctx)


def default_pipeline() -> Pipeline:
    prune = PruneStep()
    return Pipeline(
        [
            LoadStep(),
            DataStep(),
            prune,
            ExportStep(),
            TunedQuantizeStep(),
            ValidateStep(),
            TuningReportStep(prune),
            GateStep(),
            PackageStep(),
        ]
    )


@dataclass
class ConvertResult:
    """What :func:`convert` produced."""

    bundle_dir: Path
    tar_path: Path
    manifest: Manifest
    report: ConversionReport
    report_json: Path
    report_md: Path


def convert(
    config: ConvertConfig, *, console: Console | None = None, pipeline: Pipeline | None = None
) -> ConvertResult:
    """Convert ``config``'s model into a validated bundle in ``config.out``.

    ``console`` receives progress bars and the report table (None: silent). Raises the typed errors of
    edgectl.errors: UserError subclasses for bad input, AccuracyToleranceError (exit 3) when an artifact misses
    ``max_accuracy_drop`` (no bundle is written then; the report is).
    """
    console = console or Console(quiet=True)
    with contextlib.suppress(ImportError):  # an ONNX input converts without torch
        import torch

        torch.manual_seed(config.seed)
    with tempfile.TemporaryDirectory(prefix="edgectl-convert-") as work:
        ctx = ConversionContext(config=config, console=console, work_dir=Path(work))
        (pipeline or default_pipeline()).run(ctx)
    report = _need(ctx.report)
    report.render(console)
    paths = output_paths(config.out, ctx.name, ctx.version)
    return ConvertResult(
        bundle_dir=_need(ctx.bundle_dir),
        tar_path=_need(ctx.tar_path),
        manifest=_need(ctx.manifest),
        report=report,
        report_json=paths["report_json"],
        report_md=paths["report_md"],
    )
