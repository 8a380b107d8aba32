"""TFLite quantization with the AI Edge Quantizer (``ai-edge-quantizer``), from an fp32 ``.tflite`` file.

Each edgectl precision maps onto one AI Edge Quantizer recipe; nothing is re-implemented here:

| precision | recipe | size | compute |
| --- | --- | --- | --- |
| fp16 | weight-only, FLOAT_CASTING to 16 bits | about 1/2 | float (weights dequantized at load) |
| int8 (static) | static, int8 weights + int8 activations, min/max calibrated | about 1/4 | integer |
| int8 (weight-only) | weight-only, int8 weights | about 1/4 | float |
| int8-dynamic | dynamic range, int8 weights, activations quantized at run time | about 1/4 | integer for FC / conv |

With static int8, the quantizer makes the model's own input and output tensors int8. Unless ``int8_io`` is set,
the graph input and output are left unquantized (recipe ``NO_QUANTIZE`` on the virtual INPUT / OUTPUT ops), so a
QUANTIZE op follows the float input and a DEQUANTIZE op precedes the float output.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.errors import CalibrationDataError, MissingDependencyError
from edgectl.fsutil import atomic_write_bytes

from .tflite import CalibrationRange, Int8Scheme, TfliteOptions, _quiet_third_party

SIGNATURE = "serving_default"


def _aeq() -> tuple[Any, Any, Any, Any]:
    try:
        with _quiet_third_party():
            from ai_edge_quantizer import qtyping, quantizer, recipe_manager
            from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as exc:
        raise MissingDependencyError(
            "ai-edge-quantizer", extra="convert-tflite", purpose="TFLite quantization"
        ) from exc
    return qtyping, quantizer, recipe_manager, AlgorithmName


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def quantize(
    fp32_path: Path,
    precision: str,
    *,
    out_dir: Path,
    calibration: Sequence[dict[str, np.ndarray]],
    input_names: Sequence[str],
    options: TfliteOptions,
) -> tuple[Path, dict[str, Any]]:
    """Quantize ``fp32_path`` to ``precision`` (fp16, int8 or int8-dynamic).

    Returns:
        The new file (``model.<precision>.tflite`` in ``out_dir``) and the parameters used, for the manifest.

    Raises:
        CalibrationDataError: static int8 without calibration rows, or rows that do not fit the model.
    """
    qtyping, quantizer_mod, recipe_manager, algorithm = _aeq()
    op = qtyping.TFLOperationName
    granularity = qtyping.QuantGranularity.CHANNELWISE if options.per_channel else qtyping.QuantGranularity.TENSORWISE
    rm = recipe_manager.RecipeManager()
    weights = {"bits": 8, "symmetric": True, "granularity": "channelwise" if options.per_channel else "tensorwise"}
    params: dict[str, Any] = {"tool": "ai-edge-quantizer", "tool_version": _version("ai-edge-quantizer")}
    static = False
    if precision == "fp16":
        rm.add_weight_only_config(".*", op.ALL_SUPPORTED, 16, granularity, algorithm_key=algorithm.FLOAT_CASTING)
        params.update(scheme="fp16-weights", weights={"bits": 16, "dtype": "float16"}, io="float32")
    elif precision == "int8-dynamic":
        rm.add_dynamic_config(".*", op.ALL_SUPPORTED, 8, granularity)
        params.update(scheme="dynamic", weights=weights, activations="quantized at run time", io="float32")
    elif options.int8_scheme is Int8Scheme.WEIGHT_ONLY:
        rm.add_weight_only_config(".*", op.ALL_SUPPORTED, 8, granularity)
        params.update(scheme="weight-only", weights=weights, io="float32")
    else:
        static = True
        rm.add_static_config(".*", op.ALL_SUPPORTED, 8, 8, granularity)
        if not options.int8_io:
            rm.add_quantization_config(".*", op.INPUT, algorithm_key=algorithm.NO_QUANTIZE)
            rm.add_quantization_config(".*", op.OUTPUT, algorithm_key=algorithm.NO_QUANTIZE)
        for pattern in options.float_layers:  # the latest matching scope wins in the quantizer's recipe
            rm.add_quantization_config(pattern, op.ALL_SUPPORTED, algorithm_key=algorithm.NO_QUANTIZE)
        params.update(
            scheme="static",
            weights=weights,
            activations={"bits": 8, "symmetric": False, "granularity": "tensorwise"},
            algorithm="min_max_uniform_quantize",
            io="int8" if options.int8_io else "float32",
            float_layers=list(options.float_layers),
        )
    # The quantizer draws its own tqdm bar on stderr; the CLI shows progress itself.
    with _quiet_third_party(), contextlib.redirect_stderr(io.StringIO()):
        q = quantizer_mod.Quantizer(str(fp32_path), rm.get_quantization_recipe())
        calibration_result = None
        if static:
            rows = _calibration_rows(fp32_path, calibration, input_names, options.calibration_samples)
            params["calibration_samples"] = len(rows)
            params["calibration_range"] = options.calibration_range.value
            calibration_result = _calibrate(fp32_path, rm, rows, options.calibration_range)
        result = q.quantize(calibration_result, enable_progress_report=False)
    path = Path(out_dir) / f"model.{precision}.tflite"
    atomic_write_bytes(path, bytes(result.quantized_model))
    if static and options.int8_io:
        params["io_quantization"] = _io_quantization(path)
    return path, params


def _calibrate(fp32_path: Path, rm: Any, rows: list[dict[str, np.ndarray]], how: CalibrationRange) -> Any:
    """Activation ranges for the recipe in ``rm``, merged across rows as ``how`` says.

    ``Quantizer.calibrate`` always merges with a moving average; the quantizer's own ``Calibrator`` takes the
    merge function, so min/max calibration uses it directly with the library's ``min_max_update``.
    """
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    update = qsv_utils.min_max_update if how is CalibrationRange.MINMAX else qsv_utils.moving_average_update
    calib = calibrator.Calibrator(fp32_path.read_bytes(), qsv_update_func=update)
    calib.calibrate({SIGNATURE: rows}, rm)
    return calib.get_model_qsvs()


def _calibration_rows(
    fp32_path: Path, calibration: Sequence[dict[str, np.ndarray]], input_names: Sequence[str], limit: int
) -> list[dict[str, np.ndarray]]:
    """Split calibration batches into rows shaped like the model's (batch-1) inputs, at most ``limit``."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(fp32_path)).get_signature_runner(SIGNATURE).get_input_details()
    rows: list[dict[str, np.ndarray]] = []
    for i, batch in enumerate(calibration):
        if set(batch) != set(input_names):
            raise CalibrationDataError(
                f"Calibration batch {i} has inputs {sorted(batch)}; the model takes {sorted(input_names)}."
            )
        arrays = {name: np.asarray(batch[name]) for name in input_names}
        n = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
        if len(n) != 1:
            raise CalibrationDataError(f"Calibration batch {i} has inputs with different batch sizes {sorted(n)}.")
        for r in range(n.pop()):
            row: dict[str, np.ndarray] = {}
            for name, a in arrays.items():
                want = tuple(int(d) for d in details[name]["shape"])
                value = a[r : r + 1] if a.ndim else a
                if tuple(value.shape) != want:
                    raise CalibrationDataError(
                        f"Calibration input '{name}' has rows of shape {list(value.shape)}; the TFLite model takes "
                        f"{list(want)}."
                    )
                row[name] = value.astype(details[name]["dtype"])
            rows.append(row)
            if len(rows) >= limit:
                return rows
    if not rows:
        raise CalibrationDataError(
            "Static int8 TFLite needs calibration data, but none was given.",
            hint="Pass --calibration data.npz, or use precision int8-dynamic.",
        )
    return rows


def _io_quantization(path: Path) -> dict[str, dict[str, float]]:
    """Scale and zero point of every quantized input / output, by name (recorded in the manifest)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(SIGNATURE)
    found: dict[str, dict[str, float]] = {}
    for name, d in [*runner.get_input_details().items(), *runner.get_output_details().items()]:
        scale, zero_point = d["quantization"]
        if scale:
            found[name] = {"scale": float(scale), "zero_point": int(zero_point), "dtype": np.dtype(d["dtype"]).name}
    return found
