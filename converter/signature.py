"""Resolve the model's input signature (names, shapes with -1 for a dynamic batch, dtypes) from, in order of
precedence: the flags, what the model declares (ONNX, .pt2), and the calibration data itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.bundle import TensorSpec
from edgectl.errors import SignatureError

from .config import ConvertConfig
from .data import preprocessing_spec, read_arrays
from .load import LoadedModel

_POSITIONAL = re.compile(r"^arr_\d+$")


def peek_data(path: Path | None) -> list[tuple[str, np.ndarray]]:
    """The arrays of a .npz / .npy data file (empty for an image folder or no data)."""
    if path is None or Path(path).is_dir() or not Path(path).exists():
        return []
    arrays, _ = read_arrays(Path(path))
    return arrays


def resolve_inputs(config: ConvertConfig, loaded: LoadedModel, raw: list[tuple[str, np.ndarray]]) -> list[TensorSpec]:
    """The input specs the export will use. Raises :class:`SignatureError` when flags contradict the model or
    when nothing says what shape the input has."""
    declared = loaded.declared_inputs
    count = len(config.input_shape or ()) or len(config.input_names or ()) or len(declared) or len(raw) or 1
    if declared and count != len(declared):
        raise SignatureError(
            f"The model has {len(declared)} input(s) ({[d.name for d in declared]}); the flags give {count}."
        )
    names = _names(config, declared, raw, count)
    specs = []
    for i, name in enumerate(names):
        decl = declared[i] if declared else None
        data = raw[i][1] if len(raw) == count else None
        shape = _shape(config, decl, data, i, name)
        dtype = decl.dtype if decl else ("float32" if data is None or data.dtype == np.float64 else str(data.dtype))
        specs.append(TensorSpec(name=name, dtype=dtype, shape=shape))
    return specs


def _names(
    config: ConvertConfig, declared: list[TensorSpec], raw: list[tuple[str, np.ndarray]], count: int
) -> list[str]:
    if config.input_names:
        if len(config.input_names) != count:
            raise SignatureError(f"--input-names gives {len(config.input_names)} name(s) for {count} input(s).")
        if declared and list(config.input_names) != [d.name for d in declared]:
            raise SignatureError(
                f"--input-names {list(config.input_names)} do not match the model's inputs "
                f"{[d.name for d in declared]}."
            )
        return list(config.input_names)
    if declared:
        return [d.name for d in declared]
    if len(raw) == count and not any(_POSITIONAL.match(k) for k, _ in raw):
        return [k for k, _ in raw]
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def _shape(
    config: ConvertConfig, decl: TensorSpec | None, data: np.ndarray | None, i: int, name: str
) -> tuple[int, ...]:
    flag = config.input_shape[i] if config.input_shape else None
    if flag is not None:
        if decl is not None and (
            len(flag) != len(decl.shape)
            or any(d not in (-1, f) for d, f in zip(decl.shape[1:], flag[1:], strict=False))
        ):
            raise SignatureError(
                f"--input-shape {'x'.join(map(str, flag))} does not fit input '{name}' of the model, which takes "
                f"{'x'.join('?' if d == -1 else str(d) for d in decl.shape)}."
            )
        return (-1, *flag[1:]) if config.dynamic_batch else flag
    if decl is not None:
        if decl.shape and decl.shape[0] == -1 and not config.dynamic_batch:
            return (1, *decl.shape[1:])
        return decl.shape
    if data is not None and data.ndim >= 1:
        return (-1, *data.shape[1:]) if config.dynamic_batch else (1, *data.shape[1:])
    if config.preprocess is not None and config.calibration is not None and Path(config.calibration).is_dir():
        spec = preprocessing_spec(config.preprocess, crop=config.image_size, channels=3)
        hw = (spec["crop"], spec["crop"])
        body = (3, *hw) if spec["layout"] == "NCHW" else (*hw, 3)
        return (-1 if config.dynamic_batch else 1, *body)
    raise SignatureError(
        f"Cannot tell the shape of input '{name}': the model does not declare it.",
        hint="Pass --input-shape, e.g. 1x3x224x224, or --calibration data to take it from.",
    )


def preprocessing_for(config: ConvertConfig, inputs: list[TensorSpec]) -> dict[str, Any] | None:
    """The preprocessing spec recorded in the manifest (None when the data is given as arrays)."""
    if config.preprocess is None:
        return None
    shape = inputs[0].shape
    nchw = not config.preprocess.endswith("nhwc")
    channels = shape[1] if nchw and len(shape) == 4 else shape[-1] if len(shape) == 4 else 3
    crop = config.image_size or (shape[2] if nchw and len(shape) == 4 and shape[2] > 0 else None)
    if not nchw and len(shape) == 4 and shape[1] > 0:
        crop = config.image_size or shape[1]
    return preprocessing_spec(config.preprocess, crop=crop, channels=max(1, channels))


def example_batch(inputs: list[TensorSpec], rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """A seeded synthetic batch for models without data (standard normal floats, zero integers)."""
    batch = {}
    for spec in inputs:
        shape = (rows if spec.shape[0] == -1 else spec.shape[0], *spec.shape[1:])
        if any(d < 1 for d in shape):
            raise SignatureError(f"Input '{spec.name}' has dynamic dimensions {list(spec.shape)}; pass --input-shape.")
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            batch[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            batch[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return batch
