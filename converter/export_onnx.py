"""Step 2: export the model to one self-contained ONNX file (fp32) with ``torch.onnx.export(dynamo=True)``.

TorchScript cannot be traced by torch.export directly, so it is first turned into an ExportedProgram with
torch's TorchScript converter. An ONNX input is re-saved as a single file. Every export is checked against the
reference model on an example batch before anything else is built on it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.bundle import TensorSpec
from edgectl.errors import ConfigError, ModelLoadError, QualityError, UnsupportedOperatorError

from .load import LoadedModel
from .types import ExportedArtifact

BATCH_DIM = "batch"
_ATEN_OP_RE = re.compile(r"No ONNX function found for <OpOverload\(op='([\w.:]+)', overload='(\w+)'\)>")
_ORT_OP_RES = (
    re.compile(r"Could not find an implementation for (\w+)\(\d+\)"),
    re.compile(r"([\w.]+:\w+)\(-?\d+\) is not a registered function/op"),
    re.compile(r"No Op registered for (\w+) with domain_version"),
    re.compile(r"No opset import for domain '([\w.]+)'"),
)


def onnx_ops(path: Path) -> tuple[int, list[str]]:
    """(default-domain opset, sorted op types; ops of other domains are written ``domain::Op``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    ops = {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in model.graph.node}
    return opset, sorted(ops)


def unsupported_from_ort(exc: Exception, what: str) -> UnsupportedOperatorError | None:
    """Turn onnxruntime's 'no kernel for X' load error into a typed error naming X, or None if it is not one."""
    text = str(exc)
    for pattern in _ORT_OP_RES:
        match = pattern.search(text)
        if match:
            op = match.group(1)
            return UnsupportedOperatorError(
                f"{what} uses operator '{op}', which onnxruntime cannot run.",
                operators=[op],
                hint="Replace it in the model, or export with a different opset (--opset).",
            )
    return None


@contextlib.contextmanager
def quiet_torch_export() -> Iterator[None]:
    """Silence torch-internal noise during export: its own pytree deprecation (LeafSpec), TorchScript's
    deprecation (the converter must still read .pt files), the TorchScript converter's note about unused buffers,
    and the registry's 'torchvision is not installed' lines. None of
    them concerns the user's model; real problems still raise.
    """
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    # "dimension ... specialized; Dim.AUTO was specified": torch.export explaining that a static dim stayed
    # static. Only the batch dimension is asked to be dynamic, and a batch that specialises raises anyway.
    logging.getLogger("torch._export.non_strict_utils").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*Manually populate .* into state_dict.*")
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* deprecated.*", category=DeprecationWarning)
        yield


def _dynamic_shapes(torch: Any, count: int, dynamic: bool) -> tuple[dict[int, Any], ...] | None:
    if not dynamic:
        return None
    # DYNAMIC lets torch.export infer the range (a .pt2 program may already bound it) and still fails loudly
    # when the model specialises the batch size.
    return tuple({0: torch.export.Dim.DYNAMIC} for _ in range(count))


def _translate_export_error(exc: Exception, kind: str, dynamic_batch: bool = False) -> Exception:
    text = str(exc)
    ops = sorted({f"{m.group(1)}.{m.group(2)}".removesuffix(".default") for m in _ATEN_OP_RE.finditer(text)})
    if ops:
        return UnsupportedOperatorError(
            f"The model uses operator(s) {', '.join(ops)}, which have no ONNX translation.",
            operators=ops,
            hint="Replace them with supported ops, or register a translation with torch.onnx.",
        )
    summary = next((line.strip() for line in text.splitlines() if "Error" in line and "<class" in line), "")
    first = summary or " ".join(text.split())[:300]
    if dynamic_batch and ("specializ" in text or "Constraints violated" in text or "batch" in text):
        return ConfigError(
            f"The {kind} model cannot be exported with a dynamic batch dimension: {first[:300]}",
            hint="Pass --no-dynamic-batch (the batch size then comes from --input-shape).",
        )
    return ModelLoadError(
        f"torch.export could not capture the {kind} model: {first[:400]}",
        hint="Make the forward pass traceable (no data-dependent Python control flow), or pass an ONNX file.",
    )


def traceable_module(loaded: LoadedModel, example: dict[str, np.ndarray], names: list[str]) -> Any:
    """A module torch.export can trace: TorchScript is rebuilt as an ExportedProgram first (torch.export cannot
    trace a ScriptModule); a .pt2 program is unlifted to its module so it can be re-exported with a dynamic batch.
    """
    import torch

    if loaded.kind == "torchscript":
        from torch._export.converter import TS2EPConverter

        args = tuple(torch.from_numpy(example[name]) for name in names)
        with quiet_torch_export():
            try:
                return inference_module(TS2EPConverter(loaded.module, args).convert().module())
            except Exception as exc:
                raise _translate_export_error(exc, loaded.kind) from exc
    return loaded.module


def inference_module(module: Any) -> Any:
    """Let ``eval()`` work on an ExportedProgram's module (torch replaces train/eval with stubs that raise).

    The graph was captured for inference (batch-norm / dropout ops carry their mode), so the flags are all that
    changes; later steps (TFLite export, pruning) call ``eval()`` on whatever module they get.
    """
    for name in ("train", "eval"):
        if name in vars(module):
            delattr(module, name)
    return module.eval()


def export_torch(
    module: Any,
    example: dict[str, np.ndarray],
    inputs: list[TensorSpec],
    output_names: list[str],
    *,
    kind: str,
    dynamic_batch: bool,
    opset: int | None,
    out_path: Path,
) -> ExportedArtifact:
    """Export a traceable torch module to ``out_path`` (fp32, one file). ``example`` holds at least 2 samples
    (a batch of 1 would let torch.export specialise the batch dimension). ``kind`` names the input in errors.

    Raises :class:`UnsupportedOperatorError` naming the ops without an ONNX translation, :class:`ModelLoadError`
    when torch.export cannot capture the model, :class:`ConfigError` when a dynamic batch is impossible.
    """
    import torch

    names = [spec.name for spec in inputs]
    args = tuple(torch.from_numpy(example[name]) for name in names)
    with quiet_torch_export():
        try:
            torch.manual_seed(0)
            # Capture first (torch.export), then translate: an unlifted .pt2 / TorchScript module reports
            # training mode to torch.onnx although its graph was captured for inference.
            program = torch.export.export(module, args, dynamic_shapes=_dynamic_shapes(torch, len(args), dynamic_batch))
            torch.onnx.export(
                program,
                args,
                str(out_path),
                dynamo=True,
                input_names=names,
                output_names=output_names,
                external_data=False,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:
            raise _translate_export_error(exc, kind, dynamic_batch) from exc
    _normalise(out_path, dynamic_batch)
    opset_used, ops = onnx_ops(out_path)
    return ExportedArtifact(path=out_path, format="onnx", precision="fp32", opset=opset_used, required_ops=ops)


def _normalise(path: Path, dynamic_batch: bool) -> None:
    """Name the dynamic batch dimension 'batch' everywhere (the exporter calls it s0, s77, ...) and re-save."""
    import onnx

    model = onnx.load(str(path))
    symbols = set()
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dynamic_batch and dims and dims[0].HasField("dim_param"):
            symbols.add(dims[0].dim_param)
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                dim.dim_param = BATCH_DIM
    model.producer_name, model.producer_version = "edgectl", ""
    # The dynamo exporter annotates every node with its PyTorch stack trace and module path: useful while
    # debugging an export, dead weight on a device (16 KiB of a 59 KiB int8 digits CNN) and a leak of the
    # workstation's source paths into every bundle.
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save_model(model, str(path), save_as_external_data=False)


def import_onnx(loaded: LoadedModel, out_path: Path) -> ExportedArtifact:
    """Copy an ONNX input into the work folder as one self-contained file and check onnxruntime can load it."""
    import onnx

    if loaded.onnx_path is None:
        raise ModelLoadError("import_onnx needs an ONNX input.")
    try:
        model = onnx.load(str(loaded.onnx_path))  # pulls in external data files next to it, if any
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelLoadError(f"{loaded.onnx_path} is not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from exc
    onnx.save_model(model, str(out_path), save_as_external_data=False)
    opset, ops = onnx_ops(out_path)
    return ExportedArtifact(path=out_path, format="onnx", precision="fp32", opset=opset, required_ops=ops)


def check_against_reference(
    onnx_path: Path, batch: dict[str, np.ndarray], reference: list[np.ndarray], output_names: list[str]
) -> float:
    """Run the exported file with onnxruntime on ``batch``; return the max abs error against ``reference``.

    Raises :class:`QualityError` when the export disagrees with the original (an exporter bug, not a precision
    effect: this is the fp32 file).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    got = sess.run(output_names, batch)
    if len(got) != len(reference):
        raise QualityError(f"The ONNX export has {len(got)} outputs; the original model has {len(reference)}.")
    worst = 0.0
    for name, have, want in zip(output_names, got, reference, strict=True):
        if have.shape != want.shape:
            raise QualityError(
                f"ONNX output '{name}' has shape {list(have.shape)}; the original gives {list(want.shape)}."
            )
        err = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64)), initial=0.0))
        bound = 1e-3 * max(1.0, float(np.max(np.abs(want), initial=0.0)))
        if not err <= bound:
            raise QualityError(
                f"The ONNX export disagrees with the original model on output '{name}' by {err:.3g} "
                f"(bound {bound:.3g}).",
                hint="This is an exporter problem; try another --opset or report the model.",
            )
        worst = max(worst, err)
    return worst
