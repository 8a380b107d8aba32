"""Inference backends behind one small interface (DESIGN.md, "Runtime").

``load(path, options) -> Session``; ``Session.run(dict[str, ndarray]) -> dict[str, ndarray]``;
``Session.signature``. :func:`backend_for` picks a backend from an artifact's format and what is installed.
"""

from __future__ import annotations

from pathlib import Path

from edgectl.errors import MissingDependencyError, UserError

from .base import Backend, Device, Session, SessionOptions, Signature
from .onnx import OnnxBackend

__all__ = [
    "Backend",
    "Device",
    "Session",
    "SessionOptions",
    "Signature",
    "available_backends",
    "backend_for",
    "load",
]


def available_backends() -> list[Backend]:
    backends: list[Backend] = [OnnxBackend()]
    try:
        from .litert import LiteRTBackend, TfliteRuntimeBackend

        backends += [LiteRTBackend(), TfliteRuntimeBackend()]
    except ImportError:  # the LiteRT backend module is optional until its extra is installed
        pass
    return [b for b in backends if b.available()]


def backend_for(fmt: str) -> Backend:
    """The first installed backend that runs ``fmt`` ("onnx" or "tflite")."""
    for backend in available_backends():
        if fmt in backend.formats:
            return backend
    if fmt == "onnx":
        raise MissingDependencyError("onnxruntime", extra="device", purpose="Running ONNX models")
    if fmt == "tflite":
        raise MissingDependencyError("ai-edge-litert", extra="tflite", purpose="Running TFLite models")
    raise UserError(f"No backend runs model format '{fmt}'; supported: onnx, tflite.")


def load(path: Path, options: SessionOptions | None = None, *, fmt: str | None = None) -> Session:
    """Load a model file with the backend for its format (from ``fmt`` or the file suffix)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    return backend_for(fmt).load(path, options or SessionOptions())
