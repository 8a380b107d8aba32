"""onnxruntime backend: CPU (XNNPACK where the build has it), CUDA / TensorRT when onnxruntime-gpu is present."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.bundle import TensorSpec
from edgectl.errors import MissingDependencyError, ModelLoadError, SignatureError

from .base import Device, SessionOptions, Signature

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _dim(d: Any) -> int:
    return int(d) if isinstance(d, int) and d > 0 else -1


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", extra="device", purpose="Running ONNX models") from exc
    return onnxruntime


def providers_for(options: SessionOptions, available: list[str]) -> list[str | tuple[str, dict[str, Any]]]:
    """Pick execution providers in order of preference from what this build offers."""
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    for name in options.extra_providers:
        if name in available:
            chosen.append(name)
    if options.device is Device.TENSORRT and "TensorrtExecutionProvider" in available:
        chosen.append("TensorrtExecutionProvider")
    if options.device in (Device.CUDA, Device.TENSORRT) and "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    if options.xnnpack and "XnnpackExecutionProvider" in available:
        threads = options.threads or SessionOptions.default_threads()
        chosen.append(("XnnpackExecutionProvider", {"intra_op_num_threads": str(threads)}))
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxSession:
    backend = "onnxruntime"

    def __init__(self, path: Path, options: SessionOptions) -> None:
        ort = _ort()
        so = ort.SessionOptions()
        threads = options.threads or SessionOptions.default_threads()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.enable_cpu_mem_arena = options.memory_arena
        if not options.spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers_for(options, ort.get_available_providers())
        if any(isinstance(p, tuple) and p[0] == "XnnpackExecutionProvider" for p in providers):
            # XNNPACK brings its own thread pool; keep onnxruntime's from competing with it.
            so.intra_op_num_threads = 1
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelLoadError(f"onnxruntime could not load {path}: {exc}".strip()) from exc
        self.providers: list[str] = list(self._sess.get_providers())
        self.threads = threads
        self._signature = Signature(
            inputs=tuple(
                TensorSpec(i.name, _ORT_DTYPES.get(i.type, i.type), tuple(_dim(d) for d in i.shape))
                for i in self._sess.get_inputs()
            ),
            outputs=tuple(
                TensorSpec(o.name, _ORT_DTYPES.get(o.type, o.type), tuple(_dim(d) for d in o.shape))
                for o in self._sess.get_outputs()
            ),
        )
        self._out_names = [o.name for o in self._signature.outputs]

    @property
    def signature(self) -> Signature:
        return self._signature

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {t.name for t in self._signature.inputs}
        if set(inputs) != expected:
            raise SignatureError(f"Model expects inputs {sorted(expected)}, got {sorted(inputs)}.")
        results = self._sess.run(self._out_names, inputs)
        return dict(zip(self._out_names, results, strict=True))

    def close(self) -> None:
        self._sess = None


class OnnxBackend:
    name = "onnxruntime"
    formats: tuple[str, ...] = ("onnx",)

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def load(self, path: Path, options: SessionOptions) -> OnnxSession:
        return OnnxSession(Path(path), options)
