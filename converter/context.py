"""The state the conversion steps share (:class:`ConversionContext`) and the step interface (:class:`Step`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgectl.bundle import Manifest, TensorSpec

from .config import ConvertConfig
from .data import Dataset
from .golden import GoldenEntry
from .load import LoadedModel
from .report import ConversionReport
from .types import ExportedArtifact
from .validate import ArtifactMetrics


def variant_of(artifact: ExportedArtifact) -> str:
    """'int8-dynamic' for dynamically quantized files, else the precision."""
    return "int8-dynamic" if artifact.quantization.get("mode") == "dynamic" else artifact.precision


def bundle_path(artifact: ExportedArtifact) -> str:
    """The artifact's file name inside the bundle: model.<variant>.<format>."""
    return f"model.{variant_of(artifact)}.{artifact.format}"


@dataclass
class ConversionContext:
    """The state the steps share. Each step reads what earlier steps set and adds its own results."""

    config: ConvertConfig
    console: Console
    work_dir: Path
    loaded: LoadedModel | None = None
    name: str = ""
    version: int = 0
    inputs: list[TensorSpec] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    preprocessing: dict[str, Any] | None = None
    calibration: Dataset | None = None
    validation: Dataset | None = None
    labels: np.ndarray | None = None
    batch_size: int = 1
    #: The original model's outputs for each validation batch: every artifact is compared against these.
    reference: list[list[np.ndarray]] = field(default_factory=list)
    reference_quality: float | None = None
    #: The torch module the export steps work on (a pruning step may replace it); None for ONNX inputs.
    module: Any = None
    example: dict[str, np.ndarray] = field(default_factory=dict)
    fp32: ExportedArtifact | None = None
    #: Artifacts to ship, in the order they were produced (packaging orders them by preference).
    artifacts: list[ExportedArtifact] = field(default_factory=list)
    metrics: dict[Path, ArtifactMetrics] = field(default_factory=dict)
    golden: dict[Path, GoldenEntry] = field(default_factory=dict)
    export_check_error: float = 0.0
    report: ConversionReport | None = None
    warnings: list[str] = field(default_factory=list)
    #: Extra records a step wants in the manifest (``manifest.converter["steps"][step name]``).
    step_records: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None
    bundle_dir: Path | None = None
    tar_path: Path | None = None

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        """A rich progress bar; yields the function that advances it by one."""
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=self.console.quiet or not self.console.is_terminal,  # bars only where they redraw
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        data = self.calibration or self.validation
        if data is None:
            return []
        return data.batches(self.batch_size, drop_last=self.batch_size > 1 and self._fixed_batch())

    def validation_batches(self) -> list[dict[str, np.ndarray]]:
        if self.validation is None:
            return []
        return self.validation.batches(self.batch_size, drop_last=self._fixed_batch())

    def _fixed_batch(self) -> bool:
        return bool(self.inputs) and self.inputs[0].shape[0] != -1


class Step(Protocol):
    name: str

    def run(self, ctx: ConversionContext) -> None: ...


def _need(value: Any) -> Any:
    if value is None:  # a step ran before the one that sets this; a programming error in a custom pipeline
        raise RuntimeError("pipeline step order is wrong: a required earlier result is missing")
    return value
