"""The conversion pipeline: load -> data -> export -> quantize -> validate -> gate -> package.

Each step is one small class with a ``name`` and ``run(ctx)``; they share one :class:`ConversionContext`.
Steps can be inserted, e.g. ``pipeline.insert_before("export", PruneStep())`` or wrapped
(``pipeline.replace("quantize", TunedQuantizeStep(...))``). :func:`convert` is the public entry point.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import platform
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgectl.runtime.backends import SessionOptions, backend_for
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgectl import __version__
from edgectl.bundle import Artifact, Manifest, TensorSpec, save_golden
from edgectl.errors import AccuracyToleranceError, ConfigError, MissingDependencyError, SignatureError, UserError

from .config import ConvertConfig
from .data import Dataset, load_dataset, read_labels
from .golden import GoldenEntry, golden_for
from .load import LoadedModel, load_model, run_torch
from .package import (
    FORMAT_RANK,
    VARIANT_RANK,
    check_free,
    next_version,
    output_paths,
    valid_name,
    write_bundle,
    write_reports,
)
from .profiles import target_record
from .prune_step import PruneStep
from .quantize import CalibrationReader, QuantizationConfig, convert_fp16, quantize_onnx
from .report import FAILED, FLAGGED, OK, ArtifactRow, ConversionReport
from .signature import example_batch, peek_data, preprocessing_for, resolve_inputs
from .stats import reference_stats
from .tuning_step import TunedQuantizeStep, TuningReportStep
from .types import ExportedArtifact
from .validate import ArtifactMetrics, accuracy_of, run_session, top1, validate_artifact

#: Samples used when the user gives no data at all (seeded random inputs; the report says so).
SYNTHETIC_SAMPLES = 32


def variant_of(artifact: ExportedArtifact) -> str:
    """'int8-dynamic' for dynamically quantized files, else the precision."""
    return "int8-dynamic" if artifact.quantization.get("mode") == "dynamic" else artifact.precision


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


class LoadStep:
    """Load the model; settle the bundle name and version and refuse an existing bundle before any work."""

    name = "load"

    def run(self, ctx: ConversionContext) -> None:
        cfg = ctx.config
        ctx.loaded = load_model(cfg)
        ctx.name = valid_name(cfg.name or ctx.loaded.default_name)
        ctx.version = cfg.version or next_version(cfg.out, ctx.name)
        check_free(cfg.out, ctx.name, ctx.version, force=cfg.force)


class DataStep:
    """Resolve the input signature, load calibration / validation data and labels, run the original model."""

    name = "data"

    def run(self, ctx: ConversionContext) -> None:
        cfg, loaded = ctx.config, _need(ctx.loaded)
        ctx.inputs = resolve_inputs(cfg, loaded, peek_data(cfg.calibration or cfg.validation))
        ctx.preprocessing = preprocessing_for(cfg, ctx.inputs)
        fixed = ctx.inputs[0].shape[0] if ctx.inputs[0].shape and ctx.inputs[0].shape[0] > 0 else None
        ctx.batch_size = fixed or cfg.batch_size
        labels_in_file = None
        if cfg.calibration is not None:
            ctx.calibration, labels_in_file = load_dataset(
                cfg.calibration, ctx.inputs, limit=cfg.calibration_samples, preprocessing=ctx.preprocessing
            )
        if cfg.validation is not None:
            ctx.validation, labels_in_file = load_dataset(
                cfg.validation, ctx.inputs, limit=cfg.validation_samples, preprocessing=ctx.preprocessing
            )
        elif ctx.calibration is not None:
            ctx.validation = ctx.calibration.head(cfg.validation_samples)
            ctx.warnings.append("Validated on the calibration data (optimistic); pass --validation for held-out data.")
        else:
            rng = np.random.default_rng(cfg.seed)
            ctx.validation = Dataset(example_batch(ctx.inputs, rng, SYNTHETIC_SAMPLES), "random inputs")
            ctx.warnings.append("No data given: validated on seeded random inputs; agreement numbers are indicative.")
        ctx.labels = read_labels(cfg.labels) if cfg.labels is not None else labels_in_file
        if ctx.labels is not None and ctx.labels.shape[0] < len(ctx.validation):
            raise ConfigError(
                f"{ctx.labels.shape[0]} labels for {len(ctx.validation)} validation samples; give one label per sample."
            )
        self._reference(ctx)

    def _reference(self, ctx: ConversionContext) -> None:
        loaded, names = _need(ctx.loaded), [s.name for s in ctx.inputs]
        data = _need(ctx.validation)
        rows = min(2, len(data)) if ctx.inputs[0].shape[0] == -1 else ctx.inputs[0].shape[0]
        ctx.example = {k: np.concatenate([v, v])[:rows] if len(v) < rows else v[:rows] for k, v in data.arrays.items()}
        run = _reference_runner(ctx, loaded, names)
        try:
            run(ctx.example)
        except (UserError, MissingDependencyError):
            raise
        except Exception as exc:  # the model's own shape checks (matmul sizes, conv channels) land here
            shapes = ", ".join(f"{k}: {'x'.join(map(str, v.shape))}" for k, v in ctx.example.items())
            raise SignatureError(
                f"The model does not accept inputs of shape {shapes}: {_last_line(exc)}",
                hint="Check --input-shape and the calibration data.",
            ) from exc
        batches = ctx.validation_batches()
        with ctx.progress("reference model", len(batches)) as advance:
            for batch in batches:
                ctx.reference.append(run(batch))
                advance()
        count = len(ctx.reference[0])
        if ctx.config.output_names:
            if len(ctx.config.output_names) != count:
                raise SignatureError(
                    f"--output-names gives {len(ctx.config.output_names)} name(s); the model has {count}."
                )
            ctx.output_names = list(ctx.config.output_names)
        elif loaded.declared_outputs:
            ctx.output_names = list(loaded.declared_outputs)
        else:
            ctx.output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
        if top1(ctx.reference[0][0]) is None and ctx.config.max_accuracy_drop is not None:
            raise ConfigError(
                "--max-accuracy-drop needs a classification output (N x classes); this model's first output has "
                f"shape {list(ctx.reference[0][0].shape)}. Judge it by the max/mean error in the report instead."
            )
        if ctx.labels is not None:
            ctx.reference_quality = accuracy_of([np.concatenate([r[0] for r in ctx.reference])], ctx.labels)


def _last_line(exc: Exception) -> str:
    """The message of an error raised inside the model; TorchScript prepends its own serialized traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _reference_runner(ctx: ConversionContext, loaded: LoadedModel, names: list[str]) -> Callable[..., Any]:
    if loaded.is_torch:
        return lambda batch: run_torch(loaded.module, batch, names)
    session = backend_for("onnx").load(_need(loaded.onnx_path), SessionOptions())
    return lambda batch: run_session(session, batch)


class ExportStep:
    """fp32 ONNX (checked against the original), plus TFLite artifacts when asked for."""

    name = "export"

    def run(self, ctx: ConversionContext) -> None:
        from .export_onnx import check_against_reference, export_torch, import_onnx, traceable_module

        cfg, loaded = ctx.config, _need(ctx.loaded)
        out = ctx.work_dir / "model.fp32.onnx"
        if loaded.is_torch:
            if ctx.module is None:
                ctx.module = traceable_module(loaded, ctx.example, [s.name for s in ctx.inputs])
            ctx.fp32 = export_torch(
                ctx.module,
                ctx.example,
                ctx.inputs,
                ctx.output_names,
                kind=loaded.kind,
                dynamic_batch=cfg.dynamic_batch,
                opset=cfg.opset,
                out_path=out,
            )
        else:
            if "tflite" in cfg.formats:
                raise UserError(
                    "TFLite export needs the PyTorch model (TorchScript, .pt2 or a factory); this input is ONNX.",
                    hint="Pass the original PyTorch model, or use --format onnx.",
                )
            ctx.fp32 = import_onnx(loaded, out)
        ctx.export_check_error = check_against_reference(
            ctx.fp32.path,
            ctx.example,
            # After --prune the export is checked against the pruned module it was made from.
            run_torch(ctx.module, ctx.example, [s.name for s in ctx.inputs])
            if "prune" in ctx.step_records
            else _reference_runner(ctx, loaded, [s.name for s in ctx.inputs])(ctx.example),
            ctx.output_names,
        )
        session = backend_for("onnx").load(ctx.fp32.path, SessionOptions())
        ctx.inputs, ctx.outputs = list(session.signature.inputs), list(session.signature.outputs)
        session.close()
        if "onnx" in cfg.formats and "fp32" in cfg.precisions:
            ctx.artifacts.append(ctx.fp32)
        if "tflite" in cfg.formats:
            ctx.artifacts.extend(self._tflite(ctx))

    def _tflite(self, ctx: ConversionContext) -> list[ExportedArtifact]:
        try:
            from edgectl.converter.tflite import TfliteOptions, export_tflite_artifacts
        except ImportError as exc:
            raise MissingDependencyError("litert-torch", extra="convert-tflite", purpose="TFLite export") from exc
        import torch

        tflite_dir = ctx.work_dir / "tflite"
        tflite_dir.mkdir(exist_ok=True)
        single = tuple(torch.from_numpy(ctx.example[s.name][:1]) for s in ctx.inputs)
        return list(
            export_tflite_artifacts(
                ctx.module,
                single,
                precisions=list(ctx.config.precisions),
                calibration=ctx.calibration_batches(),
                input_names=[s.name for s in ctx.inputs],
                output_names=list(ctx.output_names),
                out_dir=tflite_dir,
                options=TfliteOptions(
                    calibration_samples=ctx.config.calibration_samples, per_channel=ctx.config.per_channel
                ),
            )
        )


def quantization_config(config: ConvertConfig, mode: str) -> QuantizationConfig:
    """The typed quantization options the flags describe (``mode`` "static" or "dynamic")."""
    return QuantizationConfig(
        mode=mode,
        calibrate_method=config.calibrate_method,
        per_channel=config.per_channel,
        activation_type=config.activation_type,
        weight_type=config.weight_type,
        reduce_range=config.reduce_range,
        op_types_to_quantize=config.quantize_op_types,
        nodes_to_exclude=config.nodes_to_exclude,
    )


class QuantizeStep:
    """fp16, int8 static (calibrated, QDQ) and int8 dynamic ONNX files from the fp32 one."""

    name = "quantize"

    def run(self, ctx: ConversionContext) -> None:
        cfg, fp32 = ctx.config, _need(ctx.fp32)
        if "onnx" not in cfg.formats:
            return
        if "fp16" in cfg.precisions:
            ctx.artifacts.append(convert_fp16(fp32.path, ctx.work_dir / "model.fp16.onnx"))
        if "int8" in cfg.precisions:
            batches = ctx.calibration_batches()
            with ctx.progress(f"calibrating ({cfg.calibrate_method})", len(batches)) as advance:
                reader = CalibrationReader(batches, on_batch=advance)
                ctx.artifacts.append(
                    quantize_onnx(
                        fp32.path, ctx.work_dir / "model.int8.onnx", quantization_config(cfg, "static"), reader
                    )
                )
        if "int8-dynamic" in cfg.precisions:
            ctx.artifacts.append(
                quantize_onnx(
                    fp32.path, ctx.work_dir / "model.int8-dynamic.onnx", quantization_config(cfg, "dynamic"), None
                )
            )


class ValidateStep:
    """Measure every artifact (and the fp32 baseline) with the runtime backend; compute golden outputs."""

    name = "validate"

    def run(self, ctx: ConversionContext) -> None:
        cfg, fp32 = ctx.config, _need(ctx.fp32)
        batches = ctx.validation_batches()
        todo = [fp32, *[a for a in ctx.artifacts if a is not fp32]]
        golden_inputs = _need(ctx.validation).head(cfg.golden_samples).arrays
        with ctx.progress("validating", len(batches) * len(todo)) as advance:
            for artifact in todo:
                ctx.metrics[artifact.path] = validate_artifact(
                    artifact,
                    batches=batches,
                    reference=ctx.reference,
                    labels=ctx.labels,
                    latency_threads=cfg.latency_threads,
                    latency_runs=cfg.latency_runs,
                    measure_memory=cfg.measure_memory,
                    on_batch=advance,
                )
                if artifact is not fp32 or fp32 in ctx.artifacts:
                    ctx.golden[artifact.path] = golden_for(artifact, golden_inputs)
        ctx.report = build_report(ctx)


def build_report(ctx: ConversionContext) -> ConversionReport:
    """Rows for the baseline and every artifact, with drops, ratios to fp32 and status."""
    cfg, fp32 = ctx.config, _need(ctx.fp32)
    metric = "accuracy" if ctx.labels is not None else "agreement"
    if top1(ctx.reference[0][0]) is None:
        metric = "error-only"
    reference_value = ctx.reference_quality if metric == "accuracy" else 100.0 if metric == "agreement" else None
    base = ctx.metrics[fp32.path]
    rows, warnings = [], list(ctx.warnings)
    for artifact in [fp32, *[a for a in ctx.artifacts if a is not fp32]]:
        m = ctx.metrics[artifact.path]
        quality = m.accuracy if metric == "accuracy" else m.agreement
        drop = None if quality is None or reference_value is None else reference_value - quality
        shipped = artifact in ctx.artifacts
        status = OK
        allowed = cfg.allowed_drop(reference_value)
        if shipped and drop is not None and allowed is not None and drop > allowed:
            status = FAILED
        elif shipped and drop is not None and drop > cfg.warn_accuracy_drop:
            status = FLAGGED
        golden = ctx.golden.get(artifact.path)
        rows.append(
            ArtifactRow(
                path=bundle_path(artifact),
                format=artifact.format,
                precision=artifact.precision,
                variant=variant_of(artifact),
                shipped=shipped,
                status=status,
                quality=quality,
                drop=drop,
                metrics=m,
                latency_ratio=m.latency_ms_p50 / base.latency_ms_p50 if base.latency_ms_p50 > 0 else None,
                size_ratio=m.size_bytes / base.size_bytes,
                golden_atol=None if golden is None else golden.tolerance["atol"],
            )
        )
        if status != OK and drop is not None:
            warnings.append(
                f"{bundle_path(artifact)} loses {drop:.2f} {metric} points ({reference_value:.2f}% -> {quality:.2f}%)"
                + (
                    " — beyond --max-accuracy-drop."
                    if status == FAILED
                    else " — check the calibration method and data."
                )
            )
        if golden is not None and golden.info["weak"]:
            warnings.append(f"{bundle_path(artifact)}: golden tolerance is over 25% of the output scale (weak check).")
    return ConversionReport(
        name=ctx.name,
        version=ctx.version,
        source=str(_need(ctx.loaded).source.get("path")),
        metric=metric,
        reference_quality=ctx.reference_quality if metric == "accuracy" else None,
        rows=rows,
        max_accuracy_drop=cfg.allowed_drop(reference_value),
        warn_accuracy_drop=cfg.warn_accuracy_drop,
        export_check_error=ctx.export_check_error,
        validation_samples=len(_need(ctx.validation)),
        warnings=warnings,
    )


def bundle_path(artifact: ExportedArtifact) -> str:
    """The artifact's file name inside the bundle: model.<variant>.<format>."""
    return f"model.{variant_of(artifact)}.{artifact.format}"


class GateStep:
    """Stop (exit 3) with the report when a shipped artifact misses --max-accuracy-drop."""

    name = "gate"

    def run(self, ctx: ConversionContext) -> None:
        report = _need(ctx.report)
        if report.passed:
            return
        report.render(ctx.console)
        json_path, _ = write_reports(report, ctx.config.out)
        failed = [f"{r.path} (-{r.drop:.2f})" for r in report.rows if r.status == FAILED and r.drop is not None]
        raise AccuracyToleranceError(
            f"No bundle written: {', '.join(failed)} lost more than --max-accuracy-drop "
            f"{report.max_accuracy_drop} {report.metric} points.",
            report=report,
            hint=f"See {json_path}; try another --calibrate-method (minmax, percentile), more calibration data, "
            "or leave that precision out.",
        )


class PackageStep:
    """Order artifacts by preference, write the bundle (manifest, files, golden.npz), the tar and the reports."""

    name = "package"

    def run(self, ctx: ConversionContext) -> None:
        report = _need(ctx.report)
        rows = {r.path: r for r in report.rows}
        ordered = sorted(
            ctx.artifacts,
            key=lambda a: (
                rows[bundle_path(a)].status != OK,
                VARIANT_RANK.get(variant_of(a), 9),
                FORMAT_RANK.get(a.format, 9),
            ),
        )
        artifacts, files = [], {}
        for art in ordered:
            row, golden = rows[bundle_path(art)], ctx.golden[art.path]
            metrics = {
                **row.metrics.to_manifest(),
                "quality_metric": report.metric,
                "drop": row.drop,
                "status": row.status,
                "golden": golden.info,
            }
            artifacts.append(
                Artifact(
                    path=bundle_path(art),
                    format=art.format,
                    precision=art.precision,
                    opset=art.opset,
                    required_ops=list(art.required_ops),
                    quantization=dict(art.quantization),
                    metrics=metrics,
                    golden_tolerance=dict(golden.tolerance),
                )
            )
            files[bundle_path(art)] = art.path
        manifest = self._manifest(ctx, artifacts)
        golden_inputs = _need(ctx.validation).head(ctx.config.golden_samples).arrays
        expected = {bundle_path(a): ctx.golden[a.path].outputs for a in ordered}
        ctx.bundle_dir, ctx.tar_path = write_bundle(
            ctx.config.out, manifest, files, lambda p: save_golden(p, golden_inputs, expected), force=ctx.config.force
        )
        ctx.manifest = manifest
        write_reports(report, ctx.config.out)

    def _manifest(self, ctx: ConversionContext, artifacts: list[Artifact]) -> Manifest:
        cfg, loaded, report = ctx.config, _need(ctx.loaded), _need(ctx.report)
        stats_inputs = (ctx.calibration or _need(ctx.validation)).arrays
        ref_outputs = {n: np.concatenate([r[i] for r in ctx.reference]) for i, n in enumerate(ctx.output_names)}
        return Manifest(
            name=ctx.name,
            version=ctx.version,
            inputs=ctx.inputs,
            outputs=ctx.outputs,
            artifacts=artifacts,
            created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            source=dict(loaded.source),
            converter={
                "name": "edgectl.converter",
                "version": __version__,
                "tools": _tool_versions(),
                "parameters": cfg.parameters(),
                "steps": dict(ctx.step_records),
            },
            preprocessing=ctx.preprocessing,
            metrics={
                "quality_metric": report.metric,
                "reference_quality": report.reference_quality,
                "validation": {
                    "samples": report.validation_samples,
                    "origin": _need(ctx.validation).origin,
                    "labels": ctx.labels is not None,
                },
                "export_check_max_abs_error": ctx.export_check_error,
                "memory_method": report.memory_method,
                "machine": {"processor": platform.processor() or platform.machine(), "system": platform.system()},
            },
            reference_stats=reference_stats(stats_inputs, ctx.inputs, ref_outputs, ctx.preprocessing),
            target={"dynamic_batch": bool(ctx.inputs and ctx.inputs[0].shape[0] == -1), **target_record(cfg)},
        )


def _tool_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)
    return versions


def _need(value: Any) -> Any:
    if value is None:  # a step ran before the one that sets this; a programming error in a custom pipeline
        raise RuntimeError("pipeline step order is wrong: a required earlier result is missing")
    return value


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
