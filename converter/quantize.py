"""Step 3: lower the fp32 ONNX file to other precisions with onnxruntime's own tooling.

- int8 static: ``quant_pre_process`` (shape inference + graph optimisation) then ``quantize_static`` in QDQ
  format, per-channel weights, calibrated with MinMax / Entropy / Percentile (or Distribution).
- int8 dynamic: ``quantize_dynamic`` (weights ahead of time, activations at run time).
- fp16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with float32 inputs/outputs kept.

:func:`quantize_onnx` is the one entry point the accuracy-aware tuner calls with different
:class:`QuantizationConfig` values; nothing here re-implements what onnxruntime does.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.errors import CalibrationDataError, ConfigError, EdgectlError, MissingDependencyError

from .export_onnx import onnx_ops
from .types import ExportedArtifact

CALIBRATE_METHODS = ("minmax", "entropy", "percentile", "distribution")


@dataclass(frozen=True, kw_only=True)
class QuantizationConfig:
    """How to quantize one fp32 ONNX file to int8.

    ``mode`` "static" needs a calibration reader; "dynamic" does not. Types are "uint8" or "int8".
    ``op_types_to_quantize`` None means every op type onnxruntime can quantize.
    """

    mode: str = "static"
    calibrate_method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = False
    op_types_to_quantize: tuple[str, ...] | None = None
    nodes_to_exclude: tuple[str, ...] = ()
    #: Percentile kept by the "percentile" calibrator (onnxruntime's default).
    percentile: float = 99.999
    symmetric_weights: bool = True
    symmetric_activations: bool = False
    #: Run onnxruntime's quant_pre_process (shape inference + fusions such as Conv+BatchNorm) first.
    preprocess: bool = True
    extra_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("static", "dynamic"):
            raise ConfigError(f"Quantization mode must be 'static' or 'dynamic', got '{self.mode}'.")
        if self.calibrate_method not in CALIBRATE_METHODS:
            raise ConfigError(f"Unknown calibration method '{self.calibrate_method}'; use {CALIBRATE_METHODS}.")
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in ("uint8", "int8"):
                raise ConfigError(f"{name} must be 'uint8' or 'int8', got '{getattr(self, name)}'.")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["op_types_to_quantize"] = None if self.op_types_to_quantize is None else list(self.op_types_to_quantize)
        data["nodes_to_exclude"] = list(self.nodes_to_exclude)
        if self.mode == "dynamic":  # fields that only calibration uses would mislead in the manifest
            for key in ("calibrate_method", "percentile", "activation_type", "symmetric_activations"):
                data.pop(key)
        return data


class CalibrationReader:
    """onnxruntime's CalibrationDataReader over in-memory batches, with an optional per-batch callback
    (the CLI's progress bar). Batches are replayed in the same order on every pass.
    """

    def __init__(self, batches: list[dict[str, np.ndarray]], *, on_batch: Callable[[], None] | None = None) -> None:
        if not batches:
            raise CalibrationDataError("The calibration set is empty; static int8 needs at least one sample.")
        self.batches = batches
        self.on_batch = on_batch
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        if batch is not None and self.on_batch is not None:
            self.on_batch()
        return batch

    def rewind(self) -> None:
        self._iter = iter(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self.batches[start_index:end_index])


def _quant() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", extra="convert", purpose="Quantizing ONNX models") from exc
    return quantization


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def quantize_onnx(
    fp32_path: Path, out_path: Path, config: QuantizationConfig, calibration_reader: CalibrationReader | None
) -> ExportedArtifact:
    """Quantize ``fp32_path`` into ``out_path`` (int8, QDQ for static) and describe the result.

    Raises :class:`CalibrationDataError` when static mode gets no calibration data, and :class:`EdgectlError`
    naming onnxruntime's complaint when its quantizer fails on the graph.
    """
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if config.mode == "static" and calibration_reader is None:
        raise CalibrationDataError("Static int8 quantization needs calibration data (--calibration).")
    try:
        with tempfile.TemporaryDirectory(prefix="edgectl-quant-") as tmp:
            _run_onnxruntime(fp32_path, out_path, Path(tmp), config, calibration_reader)
    except EdgectlError:
        raise
    except Exception as exc:  # onnxruntime's quantizer raises untyped errors for graphs it cannot handle
        first = " ".join(str(exc).split())[:300]
        raise EdgectlError(
            f"onnxruntime could not quantize {fp32_path.name} ({config.mode} int8): {type(exc).__name__}: {first}",
            hint="Leave the failing part in float (--nodes-to-exclude, --quantize-op-types) or drop that precision.",
        ) from exc
    opset, ops = onnx_ops(out_path)
    info = {
        **config.to_json(),
        "format": "QDQ" if config.mode == "static" else "QOperator",
        "tool": f"onnxruntime {_ort_version()}",
    }
    if calibration_reader is not None and config.mode == "static":
        info["calibration_batches"] = len(calibration_reader)
        info["calibration_samples"] = int(sum(next(iter(b.values())).shape[0] for b in calibration_reader.batches))
    return ExportedArtifact(
        path=out_path, format="onnx", precision="int8", quantization=info, opset=opset, required_ops=ops
    )


def _run_onnxruntime(
    fp32_path: Path, out_path: Path, tmp: Path, config: QuantizationConfig, reader: CalibrationReader | None
) -> None:
    q = _quant()
    qtype = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    source = fp32_path
    if config.preprocess:
        source = tmp / "preprocessed.onnx"
        q.shape_inference.quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
    common = {
        "op_types_to_quantize": None if config.op_types_to_quantize is None else list(config.op_types_to_quantize),
        "per_channel": config.per_channel,
        "reduce_range": config.reduce_range,
        "weight_type": qtype[config.weight_type],
        "nodes_to_exclude": list(config.nodes_to_exclude),
    }
    if config.mode == "dynamic":
        q.quantize_dynamic(
            str(source), str(out_path), **common, extra_options={"WeightSymmetric": config.symmetric_weights}
        )
        return
    if reader is None:
        raise CalibrationDataError("Static int8 quantization needs calibration data (--calibration).")
    reader.rewind()
    method = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
        "distribution": q.CalibrationMethod.Distribution,
    }[config.calibrate_method]
    extra = {
        "WeightSymmetric": config.symmetric_weights,
        "ActivationSymmetric": config.symmetric_activations,
        "CalibPercentile": config.percentile,
    }
    # onnxruntime's calibrators warn (numpy RuntimeWarning) on constant tensors (ranges stay valid) and
    # print their progress to stdout, which would garble the CLI's own progress bar.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", RuntimeWarning)
        q.quantize_static(
            str(source),
            str(out_path),
            reader,
            quant_format=q.QuantFormat.QDQ,
            activation_type=qtype[config.activation_type],
            calibrate_method=method,
            extra_options=extra,
            **common,
        )


def convert_fp16(fp32_path: Path, out_path: Path) -> ExportedArtifact:
    """Convert weights and compute to float16, keeping float32 inputs and outputs (the device feeds float32)."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", extra="convert", purpose="fp16 conversion") from exc
    model = onnx.load(str(fp32_path))
    with warnings.catch_warnings():
        # It warns for every weight it clamps into the fp16 range; the clamping is the intended behaviour.
        warnings.simplefilter("ignore", UserWarning)
        converted = convert_float_to_float16(model, keep_io_types=True)
    onnx.save_model(converted, str(out_path), save_as_external_data=False)
    opset, ops = onnx_ops(out_path)
    info = {
        "method": "onnxruntime.transformers.float16",
        "keep_io_types": True,
        "tool": f"onnxruntime {_ort_version()}",
    }
    return ExportedArtifact(
        path=out_path, format="onnx", precision="fp16", quantization=info, opset=opset, required_ops=ops
    )
