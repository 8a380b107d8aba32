"""The tuner wired to onnxruntime: quantize with :func:`~edgectl.converter.quantize.quantize_onnx`, measure with
the runtime's own backend (:mod:`edgectl.converter.validate`), as the pipeline does for its artifacts.

The fp32 model is first put through onnxruntime's ``quant_pre_process`` once; every candidate is quantized from that
file with pre-processing off, so the node names the sensitivity analysis keeps in float are the names the quantizer
sees (pre-processing fuses and renames nodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgectl.errors import ConfigError, MissingDependencyError

from .quantize import CalibrationReader, QuantizationConfig, quantize_onnx
from .tuning import AccuracyTolerance, Evaluate, Metrics, QuantSettings, TuningConfig, TuningReport, tune
from .types import ExportedArtifact
from .validate import measure_latency, run_session, top1


@dataclass(frozen=True, kw_only=True)
class TuningData:
    """Data the tuner measures with.

    Args:
        calibration: calibration batches (input name -> array).
        validation: validation batches.
        reference: the original model's outputs per validation batch (what agreement is measured against).
        labels: true labels of the validation samples, or ``None`` (then top-1 agreement is the accuracy).
        latency_threads: threads for the latency measurement (the target profile's).
        latency_runs: timed runs per candidate.
    """

    calibration: list[dict[str, np.ndarray]]
    validation: list[dict[str, np.ndarray]]
    reference: list[list[np.ndarray]]
    labels: np.ndarray | None = None
    latency_threads: int = 1
    latency_runs: int = 20


def to_quantization_config(settings: QuantSettings, *, reduce_range: bool = False) -> QuantizationConfig:
    """The pipeline's quantization config for one tuning candidate (pre-processing already done)."""
    return QuantizationConfig(
        mode="static",
        calibrate_method=str(settings.calibration),
        per_channel=settings.per_channel,
        activation_type=settings.activation_type,
        weight_type=settings.weight_type,
        reduce_range=reduce_range,
        nodes_to_exclude=settings.float_nodes,
        preprocess=False,
    )


def tune_onnx(
    fp32_path: Path,
    *,
    data: TuningData,
    tolerance: AccuracyTolerance,
    default: QuantSettings,
    work_dir: Path,
    max_float_layers: int = 8,
    max_sensitivity_groups: int = 24,
    baseline_accuracy: float | None = None,
) -> tuple[ExportedArtifact, TuningReport]:
    """Run the accuracy-aware search on an fp32 ONNX model.

    Args:
        baseline_accuracy: what drops are measured from (the original model's accuracy when ``fp32_path`` is a
            pruned model); the fp32 model's own accuracy when ``None``.

    Returns:
        (the chosen int8 artifact, its ``quantization`` record including the tuning summary; the report).

    Raises:
        AccuracyToleranceError: no candidate meets the tolerance (``err.report`` holds the table).
        ConfigError: the model has no classification output, so accuracy cannot be measured.
    """
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", extra="convert", purpose="Quantizing ONNX models") from exc
    work_dir.mkdir(parents=True, exist_ok=True)
    prepared = work_dir / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    artifacts: dict[Path, ExportedArtifact] = {}
    reader = CalibrationReader(data.calibration)

    def quantize(src: Path, dst: Path, settings: QuantSettings) -> None:
        artifacts[dst] = quantize_onnx(src, dst, to_quantization_config(settings), reader)

    config = TuningConfig(
        tolerance=tolerance,
        default=default,
        max_float_layers=max_float_layers,
        max_sensitivity_groups=max_sensitivity_groups,
        baseline_accuracy=baseline_accuracy,
    )
    chosen, report = tune(prepared, quantize=quantize, evaluate=_evaluator(data), config=config, work_dir=work_dir)
    artifact = artifacts[chosen]
    artifact.quantization["tuning"] = {
        "tolerance": str(tolerance),
        "chosen": report.chosen.label if report.chosen else None,
        "candidates": len(report.candidates) - 1,
        "float_layers": list(report.chosen.settings.float_layers) if report.chosen and report.chosen.settings else [],
    }
    return artifact, report


def _evaluator(data: TuningData) -> Evaluate:
    want = [np.concatenate(parts) for parts in zip(*data.reference, strict=True)]
    expected = data.labels if data.labels is not None else top1(want[0])
    if expected is None:
        raise ConfigError(
            "--max-accuracy-drop needs a classification output of shape (N, classes) to measure accuracy or "
            "agreement; this model's first output has no class axis.",
            hint="Drop --max-accuracy-drop, or convert without int8.",
        )
    single = {k: v[:1] for k, v in data.validation[0].items()}

    def evaluate(path: Path) -> Metrics:
        from edgectl.runtime.backends import SessionOptions, backend_for

        session = backend_for("onnx").load(path, SessionOptions(threads=data.latency_threads))
        try:
            outputs = [run_session(session, batch)[0] for batch in data.validation]
        finally:
            session.close()
        got = np.concatenate(outputs)
        error = float(np.mean((got.astype(np.float64) - want[0].astype(np.float64)) ** 2))
        predicted = top1(got)
        accuracy = float(np.mean(predicted == expected[: len(predicted)]) * 100.0) if predicted is not None else 0.0
        artifact = ExportedArtifact(path=path, format="onnx", precision="int8")
        p50, _ = measure_latency(artifact, single, threads=data.latency_threads, runs=data.latency_runs)
        return Metrics(accuracy=accuracy, latency_ms=p50, error=error)

    return evaluate
