"""Pipeline steps for accuracy-aware int8 and the before/after report (docs/tuning.md).

- :class:`TunedQuantizeStep` replaces ``quantize``: with ``--max-accuracy-drop`` and int8 requested, the int8 file
  comes from the tuner (:func:`~edgectl.converter.tuning_ort.tune_onnx`); everything else is the plain step's work.
- :class:`TuningReportStep` runs after ``validate``: it adds the unpruned model as a "before" row, the pruning and
  tuning tables as report sections, and a warning for every int8 file slower than fp32 on this machine.
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import TYPE_CHECKING, Any

from .profiles import CalibrationMethod
from .tuning import AccuracyTolerance, QuantSettings
from .tuning_ort import TuningData, tune_onnx

if TYPE_CHECKING:
    from .pipeline import ConversionContext
    from .prune_step import PruneStep


class TunedQuantizeStep:
    """``quantize`` with the accuracy guarantee: the int8 file is the fastest candidate within the tolerance."""

    name = "quantize"

    def run(self, ctx: ConversionContext) -> None:
        """Raises:
        AccuracyToleranceError: no int8 candidate meets --max-accuracy-drop (the message holds the table).
        """
        from .pipeline import QuantizeStep

        cfg = ctx.config
        if cfg.max_accuracy_drop is None or "int8" not in cfg.precisions or "onnx" not in cfg.formats:
            QuantizeStep().run(ctx)
            return
        others = tuple(p for p in cfg.precisions if p != "int8")
        if others:  # fp16 / int8-dynamic are not tuned: the plain step makes them
            ctx.config = dataclasses.replace(cfg, precisions=others)
            try:
                QuantizeStep().run(ctx)
            finally:
                ctx.config = cfg
        fp32 = ctx.fp32
        if fp32 is None:
            raise RuntimeError("pipeline step order is wrong: quantize runs before export")
        # Without labels the quality is agreement with the original model, which scores 100 by definition.
        baseline = ctx.reference_quality if ctx.labels is not None else 100.0
        data = TuningData(
            calibration=ctx.calibration_batches(),
            validation=ctx.validation_batches(),
            reference=ctx.reference,
            labels=ctx.labels,
            latency_threads=cfg.latency_threads,
            latency_runs=min(cfg.latency_runs, 10),
        )
        default = QuantSettings(
            calibration=CalibrationMethod(cfg.calibrate_method),
            per_channel=cfg.per_channel,
            activation_type=cfg.activation_type,
            weight_type=cfg.weight_type,
        )
        with ctx.console.status("accuracy-aware int8: searching for the fastest model within the tolerance"):
            artifact, report = tune_onnx(
                fp32.path,
                data=data,
                tolerance=AccuracyTolerance(cfg.max_accuracy_drop, relative=cfg.accuracy_drop_relative),
                default=default,
                work_dir=ctx.work_dir / "tuning",
                max_float_layers=cfg.max_float_layers,
                baseline_accuracy=baseline,
            )
        final = ctx.work_dir / "model.int8.onnx"
        shutil.copyfile(artifact.path, final)
        artifact.path = final
        ctx.artifacts.append(artifact)
        ctx.step_records["tuning"] = report.to_json()
        ctx.step_records["tuning"]["markdown"] = report.to_markdown()


class TuningReportStep:
    """After validation: the "before pruning" row, the pruning / tuning sections, int8-slower-than-fp32 warnings."""

    name = "tuning-report"

    def __init__(self, prune: PruneStep) -> None:
        self.prune = prune

    def run(self, ctx: ConversionContext) -> None:
        if ctx.report is None:
            raise RuntimeError("pipeline step order is wrong: tuning-report runs before validate")
        self._prefer_fp32_if_int8_is_slower(ctx)
        report = ctx.report
        prune = ctx.step_records.get("prune")
        if prune is not None:
            self._before_row(ctx, prune)
            report.sections.append(_prune_section(prune))
        tuning = ctx.step_records.get("tuning")
        if tuning is not None:
            report.sections.append("## Accuracy-aware int8\n\n" + tuning.pop("markdown"))
        for row in report.rows:
            if row.shipped and row.precision == "int8" and row.latency_ratio is not None and row.latency_ratio > 1.0:
                report.warnings.append(
                    f"{row.path} is slower than fp32 on this machine ({row.latency_ratio:.2f}x the latency)"
                    + (
                        ": dynamic int8 re-quantizes activations at run time; use static int8 (--precision int8)."
                        if row.variant == "int8-dynamic"
                        else "; check the target profile, or ship fp32 for this device class."
                    )
                )

    def _prefer_fp32_if_int8_is_slower(self, ctx: ConversionContext) -> None:
        """The profile's rule for machines like this one (``int8_must_be_faster``): when the precision came from the
        profile and static int8 measured slower than fp32 here, ship fp32 instead and say so."""
        from .golden import golden_for
        from .pipeline import build_report, variant_of
        from .profiles import get_profile, target_record

        cfg, fp32, validation = ctx.config, ctx.fp32, ctx.validation
        record = target_record(cfg)
        if not record or fp32 is None or validation is None or "precisions" in record["overridden"]:
            return
        if not get_profile(record["profile"]).int8_must_be_faster:
            return
        base = ctx.metrics[fp32.path].latency_ms_p50
        slower = [
            a
            for a in ctx.artifacts
            if a.format == "onnx" and variant_of(a) == "int8" and ctx.metrics[a.path].latency_ms_p50 >= base
        ]
        if not slower:
            return
        for artifact in slower:
            ctx.artifacts.remove(artifact)
        if fp32 not in ctx.artifacts:
            ctx.artifacts.append(fp32)
            ctx.golden[fp32.path] = golden_for(fp32, validation.head(cfg.golden_samples).arrays)
        ratio = ctx.metrics[slower[0].path].latency_ms_p50 / base if base > 0 else float("inf")
        ctx.warnings.append(
            f"int8 measured {ratio:.2f}x the fp32 latency on this machine; target {record['profile']} ships fp32 "
            "instead (pass --precision int8 to keep int8)."
        )
        ctx.step_records["precision_fallback"] = {"dropped": "int8", "latency_vs_fp32": ratio}
        ctx.report = build_report(ctx)

    def _before_row(self, ctx: ConversionContext, record: dict[str, Any]) -> None:
        from .export_onnx import export_torch
        from .report import OK, ArtifactRow
        from .validate import validate_artifact

        cfg, report = ctx.config, ctx.report
        if report is None or self.prune.original is None or ctx.fp32 is None:
            return
        loaded = ctx.loaded
        unpruned = export_torch(
            self.prune.original,
            ctx.example,
            ctx.inputs,
            ctx.output_names,
            kind=loaded.kind if loaded is not None else "module",
            dynamic_batch=cfg.dynamic_batch,
            opset=cfg.opset,
            out_path=ctx.work_dir / "model.unpruned.onnx",
        )
        metrics = validate_artifact(
            unpruned,
            batches=ctx.validation_batches(),
            reference=ctx.reference,
            labels=ctx.labels,
            latency_threads=cfg.latency_threads,
            latency_runs=cfg.latency_runs,
            measure_memory=False,
        )
        base = ctx.metrics[ctx.fp32.path]
        quality = metrics.accuracy if report.metric == "accuracy" else metrics.agreement
        reference = report.reference_quality if report.metric == "accuracy" else 100.0
        report.rows.append(
            ArtifactRow(
                path="unpruned.fp32.onnx",
                format="onnx",
                precision="fp32",
                variant="fp32-unpruned",
                shipped=False,
                status=OK,
                quality=quality,
                drop=None if quality is None or reference is None else reference - quality,
                metrics=metrics,
                latency_ratio=metrics.latency_ms_p50 / base.latency_ms_p50 if base.latency_ms_p50 > 0 else None,
                size_ratio=metrics.size_bytes / base.size_bytes,
                note="the model before --prune (not shipped)",
            )
        )
        record["latency_ms_p50"] = {"before": metrics.latency_ms_p50, "after": base.latency_ms_p50}
        record["onnx_bytes"] = {"before": metrics.size_bytes, "after": base.size_bytes}


def _prune_section(record: dict[str, Any]) -> str:
    before, after = record["before"], record["after"]
    latency = record.get("latency_ms_p50", {})
    onnx_bytes = record.get("onnx_bytes", {})

    def ratio(a: Any, b: Any) -> str:
        return "-" if not a or b is None else f"{b / a:.2f}x"

    rows = [
        ("parameters", before["params"], after["params"]),
        ("non-zero parameters", before["nonzero_params"], after["nonzero_params"]),
        ("MACs (one sample)", before["macs"], after["macs"]),
        ("state dict bytes", before["size_bytes"], after["size_bytes"]),
        ("state dict gzip bytes", before["gzip_bytes"], after["gzip_bytes"]),
        ("fp32 ONNX bytes", onnx_bytes.get("before"), onnx_bytes.get("after")),
        ("fp32 latency p50 ms", latency.get("before"), latency.get("after")),
    ]
    lines = [
        f"## Pruning: {record['config']['method']} {record['config']['ratio']}",
        "",
        "| | before | after | after / before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, b, a in rows:
        fmt = (
            (lambda v: "-" if v is None else f"{v:.3f}")
            if "ms" in label
            else (lambda v: "-" if v is None else f"{v:,}")
        )
        lines.append(f"| {label} | {fmt(b)} | {fmt(a)} | {ratio(b, a)} |")
    recovery = record.get("recovery", {})
    lines += ["", f"Recovery: {recovery.get('method', 'none')}."]
    if recovery.get("method") == "distillation":
        lines[-1] = (
            f"Recovery: distillation, {recovery['steps']} steps, {recovery['loss']} loss "
            f"{recovery['first_loss']:.4f} -> {recovery['last_loss']:.4f}."
        )
    if record["config"]["method"] == "magnitude":
        lines += ["", "Magnitude pruning keeps dense shapes: it shrinks the compressed (gzip) size, not the latency."]
    if record.get("protected"):
        lines += ["", f"Protected layers: {', '.join(record['protected'])}."]
    return "\n".join(lines) + "\n"
