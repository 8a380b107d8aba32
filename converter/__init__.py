"""edgectl.converter — workstation side: PyTorch model -> validated, packaged bundle.

Public API: :func:`convert`, :class:`ConvertConfig`, :class:`ConvertResult` (plus :class:`QuantizationConfig` and
:func:`quantize_onnx` for tools that drive quantization themselves). torch, onnx and onnxruntime are imported only
inside the functions that use them, so importing this package is cheap.
"""

from .config import ConvertConfig
from .pipeline import ConversionContext, ConvertResult, Pipeline, convert, default_pipeline
from .quantize import QuantizationConfig, quantize_onnx
from .report import ArtifactRow, ConversionReport
from .types import ExportedArtifact

__all__ = [
    "ArtifactRow",
    "ConversionContext",
    "ConversionReport",
    "ConvertConfig",
    "ConvertResult",
    "ExportedArtifact",
    "Pipeline",
    "QuantizationConfig",
    "convert",
    "default_pipeline",
    "quantize_onnx",
]
