"""Step 1: load the model to convert — TorchScript, a torch.export program, a factory, a module, or ONNX.

The result, :class:`LoadedModel`, knows what the model is, what it says about its inputs (names, shapes with -1
for dynamic dims) and how to run it as the *reference*: every artifact is compared against these outputs.
torch and onnx are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.bundle import TensorSpec
from edgectl.errors import InputFileError, MissingDependencyError, ModelLoadError
from edgectl.fsutil import sha256_file

from .config import ConvertConfig

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass
class LoadedModel:
    """The model as loaded, plus what it declares about itself.

    ``module`` is a callable torch module (for torch inputs); ``program`` an ExportedProgram (for .pt2);
    ``onnx_path`` the input file (for ONNX inputs). ``declared_inputs`` holds names/shapes the model itself
    declares (empty when it declares none, e.g. TorchScript).
    """

    kind: str  # "torchscript" | "export" | "factory" | "module" | "onnx"
    default_name: str
    source: dict[str, Any]
    module: Any = None
    program: Any = None
    onnx_path: Path | None = None
    declared_inputs: list[TensorSpec] = field(default_factory=list)
    declared_outputs: list[str] = field(default_factory=list)

    @property
    def is_torch(self) -> bool:
        return self.kind != "onnx"


def sanitise_name(text: str) -> str:
    """A valid bundle name from a file stem or factory name (lowercase, [a-z0-9_.-], at most 63 chars)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-._")
    return (name or "model")[:63]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", extra="convert", purpose="Converting PyTorch models") from exc
    return torch


def load_model(config: ConvertConfig) -> LoadedModel:
    """Load ``config.model`` or ``config.source``. Raises InputFileError / ModelLoadError with a clear message."""
    if config.model is not None:
        return _from_module(config.model)
    source = str(config.source)
    path = Path(source)
    if FACTORY_RE.match(source) and not path.exists():
        return _from_factory(source, config.weights)
    if not path.exists():
        raise InputFileError(f"Model file {path} does not exist.", hint="Check the path, or pass 'module:callable'.")
    if not path.is_file():
        raise InputFileError(f"{path} is not a file; pass a model file (.pt, .pt2, .onnx) or 'module:callable'.")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _from_onnx(path)
    if suffix == ".pt2":
        return _from_export(path)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return _from_torchscript(path)
    raise InputFileError(
        f"Do not know how to load {path.name}: expected .pt/.pth (TorchScript), .pt2 (torch.export) or .onnx.",
        hint="For a state dict, pass the factory that builds the module: 'pkg.module:build' --weights file.pth.",
    )


def _file_source(path: Path, kind: str, framework: str) -> dict[str, Any]:
    digest, length = sha256_file(path)
    return {"path": str(path), "kind": kind, "sha256": digest, "length": length, "framework": framework}


def _torch_framework() -> str:
    return f"pytorch {_torch().__version__}"


def _from_torchscript(path: Path) -> LoadedModel:
    torch = _torch()
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in torch, but existing .pt files are exactly what users bring to convert.
            warnings.filterwarnings("ignore", message=r".*torch\.jit.* deprecated.*", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError / zipfile errors for non-TorchScript files
        raise ModelLoadError(
            f"{path} is not a TorchScript archive ({str(exc).splitlines()[0][:200]}).",
            hint="Save it with torch.jit.save(torch.jit.trace(model, example)), export a .pt2, or pass the "
            "factory that builds the module with --weights.",
        ) from exc
    module.eval()
    return LoadedModel(
        kind="torchscript",
        default_name=sanitise_name(path.stem),
        source=_file_source(path, "torchscript", _torch_framework()),
        module=module,
    )


def _from_export(path: Path) -> LoadedModel:
    from .export_onnx import inference_module

    torch = _torch()
    try:
        with warnings.catch_warnings():
            # torch's own pytree code trips its deprecation of LeafSpec while unpickling; not ours to fix.
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelLoadError(
            f"{path} is not a torch.export program ({str(exc).splitlines()[0][:200]}).",
            hint="Write it with torch.export.save(torch.export.export(model, args), 'model.pt2').",
        ) from exc
    declared: list[TensorSpec] = []
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    for name in program.graph_signature.user_inputs:
        node = placeholders.get(name)
        val = None if node is None else node.meta.get("val")
        if val is None or not hasattr(val, "shape"):
            continue
        shape = tuple(int(d) if isinstance(d, int) else -1 for d in val.shape)
        declared.append(TensorSpec(name=str(name), dtype=str(val.dtype).removeprefix("torch."), shape=shape))
    return LoadedModel(
        kind="export",
        default_name=sanitise_name(path.stem),
        source=_file_source(path, "torch.export", _torch_framework()),
        module=inference_module(program.module()),
        program=program,
        declared_inputs=declared,
    )


def _import_callable(spec: str) -> Callable[[], Any]:
    module_name, _, attr = spec.partition(":")
    # Factories next to the user's files (the common case) must be importable without installing them.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or any error raised while the module body runs
        raise ModelLoadError(
            f"Cannot import module '{module_name}' for factory '{spec}': {type(exc).__name__}: {exc}.",
            hint="Check the spelling and that the package is installed or in the current folder.",
        ) from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelLoadError(f"Module '{module_name}' has no attribute '{attr}' (factory '{spec}').")
        target = getattr(target, part)
    if not callable(target):
        raise ModelLoadError(f"'{spec}' is not callable; it must build and return a torch.nn.Module.")
    return target


def _from_factory(spec: str, weights: Path | None) -> LoadedModel:
    torch = _torch()
    factory = _import_callable(spec)
    try:
        module = factory()
    except Exception as exc:
        raise ModelLoadError(f"Factory '{spec}' raised {type(exc).__name__}: {exc}.") from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"Factory '{spec}' returned {type(module).__name__}, not a torch.nn.Module.")
    source: dict[str, Any] = {"path": spec, "kind": "factory", "framework": _torch_framework()}
    if weights is not None:
        _load_weights(module, Path(weights))
        digest, length = sha256_file(Path(weights))
        source.update(weights=str(weights), sha256=digest, length=length)
    else:
        source["sha256"] = state_dict_sha256(module)
    module.eval()
    return LoadedModel(
        kind="factory", default_name=sanitise_name(spec.rpartition(":")[2]), source=source, module=module
    )


def _load_weights(module: Any, path: Path) -> None:
    torch = _torch()
    if not path.is_file():
        raise InputFileError(f"Weights file {path} does not exist.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"Cannot read weights {path}: {str(exc).splitlines()[0][:200]}.") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ModelLoadError(
            f"Weights {path} do not fit the module: {first}", hint="Check the factory matches the weights."
        ) from exc


def state_dict_sha256(module: Any) -> str:
    """A content hash of a module's parameters and buffers (names, dtypes, shapes and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        array = value.detach().cpu().contiguous().numpy()
        digest.update(f"{key}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _from_module(module: Any) -> LoadedModel:
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"ConvertConfig.model must be a torch.nn.Module, got {type(module).__name__}.")
    module.eval()
    source = {
        "path": None,
        "kind": "module",
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "sha256": state_dict_sha256(module),
        "framework": _torch_framework(),
    }
    return LoadedModel(kind="module", default_name=sanitise_name(type(module).__name__), source=source, module=module)


_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool"}


def _from_onnx(path: Path) -> LoadedModel:
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", extra="convert", purpose="Converting ONNX models") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX model: {str(exc).splitlines()[0][:200]}.") from exc
    _check_runnable(path)
    initializers = {i.name for i in model.graph.initializer}
    declared = []
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        ttype = inp.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in ttype.shape.dim)
        declared.append(TensorSpec(inp.name, _ONNX_DTYPES.get(ttype.elem_type, "float32"), shape))
    return LoadedModel(
        kind="onnx",
        default_name=sanitise_name(path.stem),
        source=_file_source(path, "onnx", f"onnx opset {_opset(model)}"),
        onnx_path=path,
        declared_inputs=declared,
        declared_outputs=[o.name for o in model.graph.output],
    )


def _check_runnable(path: Path) -> None:
    """Load the file once with the runtime's onnxruntime backend; name any operator it has no kernel for."""
    from edgectl.runtime.backends import SessionOptions, backend_for

    from .export_onnx import unsupported_from_ort

    try:
        backend_for("onnx").load(path, SessionOptions(threads=1)).close()
    except ModelLoadError as exc:
        unsupported = unsupported_from_ort(exc, path.name)
        if unsupported is None:
            raise
        raise unsupported from exc


def _opset(model: Any) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def run_torch(module: Any, batch: dict[str, np.ndarray], input_names: list[str]) -> list[np.ndarray]:
    """Run a torch module on one batch (inputs in ``input_names`` order); returns its outputs as float arrays."""
    torch = _torch()
    args = [torch.from_numpy(np.ascontiguousarray(batch[name])) for name in input_names]
    with torch.no_grad():
        result = module(*args)
    return [t.detach().cpu().numpy() for t in flatten_outputs(result)]


def flatten_outputs(result: Any) -> list[Any]:
    """Tensors of a model's result in a stable order (tuple/list order, dict keys in insertion order)."""
    if isinstance(result, dict):
        return [t for v in result.values() for t in flatten_outputs(v)]
    if isinstance(result, list | tuple):
        return [t for v in result for t in flatten_outputs(v)]
    return [result]
