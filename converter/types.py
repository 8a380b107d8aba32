"""Types shared by the converter's steps (export, quantize, prune, validate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ExportedArtifact:
    """A model file produced by an export or quantization step, before validation.

    ``path`` is a file in the step's work directory; the pipeline copies it into the bundle.
    ``quantization`` records every parameter the step used (it goes into the manifest unchanged).
    """

    path: Path
    format: str  # "onnx" | "tflite"
    precision: str  # "fp32" | "fp16" | "int8"
    quantization: dict[str, Any] = field(default_factory=dict)
    opset: int | None = None
    required_ops: list[str] = field(default_factory=list)
