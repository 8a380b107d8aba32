"""The variants compared: edgectl's fp32 and int8 ONNX (one real ``convert`` call) and plain ``quantize_static``."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgectl.fsutil import atomic_write_bytes

#: Batch size used to feed calibration data to plain quantize_static (MinMax does not depend on it).
CALIBRATION_BATCH = 8


@dataclass
class EdgectlRun:
    """One ``edgectl.converter.convert`` call: where its files are, how long it took, what it recorded."""

    fp32_path: Path
    int8_path: Path
    bundle_dir: Path
    wall_s: float
    #: CPU seconds of this process's threads during the call (subprocesses not included): less load-sensitive.
    cpu_s: float
    #: 1-minute load average just before and just after the call: how much other work shared the cores.
    load_before: float
    load_after: float
    #: Seconds per pipeline step (load, data, export, quantize, validate, gate, package).
    step_s: dict[str, float] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    #: edgectl's own report rows (what ``edgectl convert`` printed), for reference.
    report_rows: list[dict[str, Any]] = field(default_factory=list)


class _TimedStep:
    """Wraps a pipeline step and records how long it ran, so the wall time can be broken down honestly."""

    def __init__(self, step: Any, times: dict[str, float]) -> None:
        self.step, self.times, self.name = step, times, step.name

    def run(self, ctx: Any) -> None:
        start = time.perf_counter()
        try:
            self.step.run(ctx)
        finally:
            self.times[self.name] = self.times.get(self.name, 0.0) + time.perf_counter() - start


def _save_npy(path: Path, array: np.ndarray) -> Path:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def run_edgectl(
    model: nn.Module,
    *,
    name: str,
    calibration: np.ndarray,
    validation: np.ndarray,
    labels: np.ndarray | None,
    work_dir: Path,
) -> EdgectlRun:
    """Convert ``model`` to fp32 + int8 ONNX with edgectl's defaults, timing the whole call and each step.

    The data go in as ``.npy`` files, the way a user passes them on the command line. Writing them is not timed.

    Raises:
        edgectl.errors.EdgectlError: whatever the converter raises for this model.
    """
    from edgectl.converter import ConvertConfig, convert, default_pipeline

    data_dir = work_dir / "data"
    config = ConvertConfig(
        model=model,
        name=name,
        calibration=_save_npy(data_dir / "calibration.npy", calibration),
        validation=_save_npy(data_dir / "validation.npy", validation),
        labels=None if labels is None else _save_npy(data_dir / "labels.npy", labels),
        validation_samples=len(validation),
        precisions=("fp32", "int8"),
        out=work_dir / "bundles",
    )
    pipeline = default_pipeline()
    times: dict[str, float] = {}
    pipeline.steps = [_TimedStep(step, times) for step in pipeline.steps]
    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    result = convert(config, pipeline=pipeline)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    load_after = os.getloadavg()[0]
    artifacts = {a.precision: a for a in result.manifest.artifacts}
    return EdgectlRun(
        fp32_path=result.bundle_dir / artifacts["fp32"].path,
        int8_path=result.bundle_dir / artifacts["int8"].path,
        bundle_dir=result.bundle_dir,
        wall_s=wall,
        cpu_s=cpu,
        load_before=load_before,
        load_after=load_after,
        step_s=times,
        quantization=dict(artifacts["int8"].quantization),
        report_rows=[_row_json(row) for row in result.report.rows],
    )


def _row_json(row: Any) -> dict[str, Any]:
    m = row.metrics
    return {
        "path": row.path,
        "quality": row.quality,
        "drop": row.drop,
        "latency_ms_p50": m.latency_ms_p50,
        "latency_ratio": row.latency_ratio,
        "size_ratio": row.size_ratio,
        "status": row.status,
    }


class _ArrayReader:
    """onnxruntime's CalibrationDataReader protocol over one in-memory array."""

    def __init__(self, input_name: str, data: np.ndarray) -> None:
        self._batches = [{input_name: data[i : i + CALIBRATION_BATCH]} for i in range(0, len(data), CALIBRATION_BATCH)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return self._batches[self._next - 1]


def run_plain_quantize_static(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> float:
    """Quantize with ``onnxruntime.quantization.quantize_static`` and all of its defaults (no pre-processing).

    Returns:
        the seconds it took.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name

    class Reader(_ArrayReader, CalibrationDataReader):
        pass

    start = time.perf_counter()
    quantize_static(str(fp32_path), str(out_path), Reader(input_name, calibration))
    return time.perf_counter() - start


def run_per_tensor_ablation(
    fp32_path: Path, out_path: Path, calibration: np.ndarray, edgectl_params: dict[str, Any]
) -> float:
    """edgectl's own quantizer with the parameters it used (``edgectl_params``, from the manifest) except
    ``per_channel=False``: what per-channel weights cost and buy.

    Returns:
        the seconds it took.
    """
    import onnx
    from edgectl.converter import QuantizationConfig, quantize_onnx
    from edgectl.converter.quantize import CalibrationReader

    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    step = CALIBRATION_BATCH
    batches = [{input_name: calibration[i : i + step]} for i in range(0, len(calibration), step)]
    start = time.perf_counter()
    known = {f.name for f in dataclasses.fields(QuantizationConfig)}
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in edgectl_params.items() if k in known}
    config = QuantizationConfig(**{**params, "per_channel": False})
    quantize_onnx(fp32_path, out_path, config, CalibrationReader(batches))
    return time.perf_counter() - start
