"""The steps that judge and ship the artifacts: validate -> gate -> package."""

from __future__ import annotations

import contextlib
import datetime as dt
import platform

import numpy as np

from edgectl import __version__
from edgectl.bundle import Artifact, Manifest, save_golden
from edgectl.errors import AccuracyToleranceError

from .context import ConversionContext, _need, bundle_path, variant_of
from .golden import golden_for
from .package import FORMAT_RANK, VARIANT_RANK, write_bundle, write_reports
from .profiles import target_record
from .report import FAILED, FLAGGED, OK, ArtifactRow, ConversionReport
from .stats import reference_stats
from .validate import top1, validate_artifact


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
                note="" if shipped else "fp32 baseline for the ratios (not requested, not shipped)",
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
