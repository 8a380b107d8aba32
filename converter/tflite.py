"""TFLite export: PyTorch module -> ``model.<precision>.tflite`` with litert-torch (no TensorFlow needed).

fp32 comes straight from ``litert_torch.convert``; fp16, int8 and int8-dynamic are made from that fp32 file by
the AI Edge Quantizer (:mod:`edgectl.converter.tflite_quant`). litert-torch is large (about 1.2 GB with its
dependencies), so it lives in the ``convert-tflite`` extra and is imported only inside :func:`export_tflite_artifacts`.

Names: litert-torch names a model's inputs ``args_0, args_1, ...`` and its outputs ``output_0, ...``. The export
rewrites those SignatureDef names, in signature order, to the caller's ``input_names`` / ``output_names``, so the
runtime finds exactly the manifest's names in the file.

Batch: by default the model is exported with batch 1 (the first row of the example inputs). The runtime then runs a
batch of N by resizing the inputs when that gives the same answers, or row by row (see
:mod:`edgectl.runtime.backends.litert`). ``dynamic_batch=True`` asks litert-torch for a dynamic first dimension,
which many models (anything with a flatten / view) cannot take: that fails with :class:`SignatureError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgectl.errors import ConfigError, MissingDependencyError, SignatureError, UnsupportedOperatorError
from edgectl.log import get_logger

from .types import ExportedArtifact

if TYPE_CHECKING:
    import torch

log = get_logger("edgectl.converter.tflite")

#: Precisions this step produces; "int8-dynamic" becomes an artifact of precision "int8".
TFLITE_PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")


class CalibrationRange(StrEnum):
    """How static int8 turns per-row activation ranges into one range per tensor."""

    MINMAX = "minmax"  # the smallest min and largest max seen: no clipping of calibration data
    MOVING_AVERAGE = "moving-average"  # the AI Edge Quantizer's default (0.95 smoothing): tighter, clips outliers


class Int8Scheme(StrEnum):
    """What precision "int8" means for TFLite."""

    STATIC = "static"  # full integer: int8 weights and activations, calibrated
    WEIGHT_ONLY = "weight-only"  # int8 weights, float compute (for models that lose accuracy under static)


@dataclass(frozen=True, kw_only=True)
class TfliteOptions:
    """How the TFLite artifacts are made. Every field describes itself in ``metadata["help"]``."""

    int8_io: bool = field(
        default=False,
        metadata={
            "help": "Static int8 only: make the model's input and output tensors int8 (callers pass quantized data, "
            "as on integer-only accelerators) instead of float32 with quantize / dequantize inside the model."
        },
    )
    int8_scheme: Int8Scheme = field(
        default=Int8Scheme.STATIC,
        metadata={
            "help": "What precision 'int8' produces: 'static' (full integer, calibrated) or 'weight-only' (int8 "
            "weights, float compute). Precision 'int8-dynamic' always gives dynamic-range quantization."
        },
    )
    calibration_samples: int = field(
        default=256, metadata={"help": "Use at most this many calibration rows for static int8."}
    )
    calibration_range: CalibrationRange = field(
        default=CalibrationRange.MINMAX,
        metadata={
            "help": "Static int8 activation ranges: 'minmax' (never clip what calibration saw) or 'moving-average' "
            "(the AI Edge Quantizer's default; narrower ranges, clips outliers)."
        },
    )
    float_layers: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Static int8: regular expressions over layer names (litert-torch writes each op's PyTorch module "
            "path into its output tensor name, e.g. '_project_conv'); matching ops stay in float."
        },
    )
    per_channel: bool = field(
        default=True, metadata={"help": "Quantize weights per output channel (per tensor when False)."}
    )
    dynamic_batch: bool = field(
        default=False,
        metadata={
            "help": "Export the first dimension as dynamic. Many models cannot take it in TFLite; by default the "
            "model is exported with batch 1 and the runtime batches by resizing or row by row."
        },
    )

    def __post_init__(self) -> None:
        if self.calibration_samples < 1:
            raise ConfigError(f"TFLite calibration_samples must be at least 1, got {self.calibration_samples}.")
        for name, kind in (("int8_scheme", Int8Scheme), ("calibration_range", CalibrationRange)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError as exc:
                choices = ", ".join(k.value for k in kind)
                raise ConfigError(f"Unknown TFLite {name.replace('_', ' ')} {value!r}; choose from {choices}.") from exc
        for pattern in self.float_layers:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"TFLite float_layers pattern {pattern!r} is not a regular expression: {exc}."
                ) from exc
        if self.int8_io and self.int8_scheme is not Int8Scheme.STATIC:
            raise ConfigError(
                "int8 input/output tensors need full-integer (static) int8; weight-only keeps float I/O.",
                hint="Drop int8_io or use int8_scheme='static'.",
            )


def _import_litert_torch() -> Any:
    try:
        with _quiet_third_party():
            import litert_torch
    except ImportError as exc:
        raise MissingDependencyError("litert-torch", extra="convert-tflite", purpose="TFLite export") from exc
    return litert_torch


@contextlib.contextmanager
def _quiet_third_party() -> Iterator[None]:
    """Silence litert-torch's progress printing and the deprecation warnings torch raises inside it.

    Those warnings come from code we do not control (torch.export's pytree, the LiteRT interpreter's debug
    mode during calibration); under ``-W error`` they would turn a good export into a failure.
    """
    previous = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        with warnings.catch_warnings(), _native_stderr_to_debug_log():
            for category in (FutureWarning, DeprecationWarning, UserWarning, RuntimeWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        if previous is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = previous


@contextlib.contextmanager
def _native_stderr_to_debug_log() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 (absl / TensorFlow log lines, torchao's notes about
    CUDA kernels it cannot load on a CPU machine) to the debug log instead of the user's terminal.

    Python-level errors still raise as usual; run with ``edgectl -vv`` to see the captured lines.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured = sink.read().decode("utf-8", errors="replace").strip()
            if captured:
                log.debug("native output of litert-torch / the AI Edge Quantizer:\n%s", captured)


def export_tflite_artifacts(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    precisions: Sequence[str],
    calibration: Sequence[dict[str, np.ndarray]],
    input_names: Sequence[str],
    output_names: Sequence[str],
    out_dir: Path,
    options: TfliteOptions,
) -> list[ExportedArtifact]:
    """Export ``module`` to one ``.tflite`` file per requested precision.

    Args:
        module: the model (put in eval mode here).
        example_inputs: one tensor per input; only their first row is used unless ``options.dynamic_batch``.
        precisions: any of fp32, fp16, int8, int8-dynamic (fp32 is always built: the others start from it, but
            it is returned only when asked for).
        calibration: batches keyed by input name (static int8 only); rows are fed one at a time.
        input_names: names of the inputs, in ``forward`` order; they become the TFLite signature names.
        output_names: names of the outputs, in the order ``forward`` returns them.
        out_dir: where the files are written (``model.fp32.tflite``, ``model.int8.tflite``, ...).
        options: see :class:`TfliteOptions`.

    Returns:
        One :class:`ExportedArtifact` per precision, in the order asked, with format "tflite" and every
        quantization parameter recorded.

    Raises:
        MissingDependencyError: litert-torch (or the AI Edge Quantizer) is not installed.
        ConfigError: an unknown precision.
        SignatureError: names that do not fit the model, or a dynamic batch the model cannot take in TFLite.
        UnsupportedOperatorError: operators litert-torch cannot convert (named; ONNX is suggested).
        CalibrationDataError: static int8 without usable calibration data.
    """
    for prec in precisions:
        if prec not in TFLITE_PRECISIONS:
            raise ConfigError(f"TFLite export cannot make precision '{prec}'; choose from {TFLITE_PRECISIONS}.")
    litert_torch = _import_litert_torch()
    import torch

    from . import tflite_quant  # imports ai-edge-quantizer, which ships with litert-torch

    if len(input_names) != len(example_inputs):
        raise SignatureError(
            f"The model takes {len(example_inputs)} example inputs but {len(input_names)} input names were given "
            f"({list(input_names)})."
        )
    module = module.eval()
    args = tuple(_export_rows(t, 2 if options.dynamic_batch else 1) for t in example_inputs)
    with torch.no_grad():
        outputs = module(*args)
    n_out = 1 if isinstance(outputs, torch.Tensor) else len(outputs)
    if n_out != len(output_names):
        raise SignatureError(
            f"The model returns {n_out} outputs but {len(output_names)} output names were given ({list(output_names)})."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = out_dir / "model.fp32.tflite"
    _convert_fp32(litert_torch, module, args, fp32_path, dynamic_batch=options.dynamic_batch)
    rename_signature(fp32_path, input_names, output_names)
    base = {
        "exporter": "litert-torch",
        "exporter_version": str(getattr(litert_torch, "__version__", "unknown")),
        "export_batch": "dynamic" if options.dynamic_batch else 1,
    }
    artifacts: list[ExportedArtifact] = []
    for prec in precisions:
        if prec == "fp32":
            artifacts.append(_artifact(fp32_path, "fp32", dict(base)))
            continue
        path, params = tflite_quant.quantize(
            fp32_path,
            prec,
            out_dir=out_dir,
            calibration=calibration,
            input_names=input_names,
            options=options,
        )
        artifacts.append(_artifact(path, "fp16" if prec == "fp16" else "int8", {**base, **params}))
    if "fp32" not in precisions:
        fp32_path.unlink(missing_ok=True)
    return artifacts


def _export_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """The example's first row, repeated ``rows`` times (a dynamic dim cannot be traced at size 1)."""
    if tensor.ndim == 0 or tensor.shape[0] < 1:
        return tensor
    first = tensor[:1]
    return first.repeat(rows, *([1] * (tensor.ndim - 1))) if rows > 1 else first.clone()


_LOWERING_RE = re.compile(r"Lowering not found: (\S+)")
_EXECUTING_RE = re.compile(r"target=([\w.]+)\]?")


def _convert_fp32(litert_torch: Any, module: Any, args: tuple[Any, ...], path: Path, *, dynamic_batch: bool) -> None:
    import torch

    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=65536)
        dynamic_shapes = tuple({0: batch} if a.ndim else None for a in args)
    try:
        with _quiet_third_party():
            litert_torch.convert(module, args, dynamic_shapes=dynamic_shapes).export(str(path))
    except Exception as exc:  # litert-torch raises RuntimeError / jax / torch.export errors for unsupported graphs
        message = str(exc)
        ops = sorted(set(_LOWERING_RE.findall(message)) | _unsupported_ops(litert_torch, module, args, message))
        if dynamic_batch:
            raise SignatureError(
                "TFLite cannot take a dynamic batch dimension for this model"
                + (f" (it fails at {', '.join(ops)})" if ops else "")
                + f": {_first_line(message)}",
                hint="Export with a fixed batch (dynamic_batch=False, the default: the runtime still batches by "
                "resizing or row by row), or use --format onnx.",
            ) from exc
        if ops:
            raise UnsupportedOperatorError(
                f"litert-torch cannot convert these operators to TFLite: {', '.join(ops)}.",
                operators=ops,
                hint="Export this model with --format onnx, or replace those operators in the model.",
            ) from exc
        raise UnsupportedOperatorError(
            f"litert-torch could not convert the model to TFLite: {_first_line(message)}",
            hint="Export this model with --format onnx.",
        ) from exc


def _first_line(message: str) -> str:
    return next((line.strip() for line in message.splitlines() if line.strip()), "unknown error")


def _unsupported_ops(litert_torch: Any, module: Any, args: tuple[Any, ...], message: str) -> set[str]:
    """Every op of the decomposed program that litert-torch has no lowering for (not just the first one).

    Only run after a failure; best effort: if this inspection itself fails, the op named in the error is used.
    """
    if not _LOWERING_RE.search(message) and "While executing" not in message:
        return set()
    found: set[str] = set()
    if "While executing" in message and not _LOWERING_RE.search(message):
        found.update(_EXECUTING_RE.findall(message.split("While executing", 1)[1].splitlines()[0]))
    try:
        import torch
        from litert_torch import fx_infra
        from litert_torch.backend import lowerings

        with _quiet_third_party():
            program = torch.export.export(module, args, strict=False)
            program = fx_infra.safe_run_decompositions(program, fx_infra.decomp.pre_convert_decomp(), can_skip=False)
        for node in program.graph.nodes:
            if node.op == "call_function" and hasattr(node.target, "_schema") and lowerings.lookup(node.target) is None:
                found.add(str(node.target))
    except Exception as exc:  # private litert-torch API: if it moved, the error message still names one op
        log.debug("could not list unsupported operators: %s", exc)
    return found


def rename_signature(path: Path, input_names: Sequence[str], output_names: Sequence[str]) -> None:
    """Rewrite the model's SignatureDef names to ``input_names`` / ``output_names``, matched by signature order.

    Signature order is the order of the main subgraph's inputs / outputs (``forward``'s argument and return order).

    Raises:
        SignatureError: the model has a different number of inputs or outputs than names given.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    if len(model.signatureDefs) != 1:
        raise SignatureError(f"{path.name} has {len(model.signatureDefs)} signatures; edgectl exports exactly one.")
    sig = model.signatureDefs[0]
    graph = model.subgraphs[sig.subgraphIndex]
    for entries, order, names, kind in (
        (sig.inputs, list(graph.inputs), input_names, "inputs"),
        (sig.outputs, list(graph.outputs), output_names, "outputs"),
    ):
        if len(entries) != len(names):
            raise SignatureError(
                f"The TFLite model has {len(entries)} {kind} but {len(names)} names were given ({list(names)})."
            )
        for entry, name in zip(sorted(entries, key=lambda e: order.index(e.tensorIndex)), names, strict=True):
            entry.name = name.encode()
    if sig.signatureKey in (None, b""):
        sig.signatureKey = b"serving_default"
    flatbuffer_utils.write_model(model, str(path))


def _artifact(path: Path, precision: str, params: dict[str, Any]) -> ExportedArtifact:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    ops = sorted(
        {str(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)) for g in model.subgraphs for op in g.operators}
    )
    return ExportedArtifact(path=path, format="tflite", precision=precision, quantization=params, required_ops=ops)
