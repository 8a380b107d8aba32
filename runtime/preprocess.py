"""Inputs for ``POST /predict/{model}``: plain JSON and image uploads, preprocessed as the manifest says.

The manifest's ``preprocessing`` for an image model looks like::

    {"kind": "image", "resize": 256, "crop": 224, "mean": [...], "std": [...], "layout": "NCHW",
     "scale": 0.00392, "color": "RGB"}

Steps (Pillow + numpy, no torch): decode, convert to ``color`` (RGB or L), resize the short side to ``resize``
(bilinear), centre-crop ``crop`` (an int or [h, w]), ``x * scale``, ``(x - mean) / std`` per channel, lay out as
NCHW or NHWC with a batch dimension of 1.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from edgectl.bundle import TensorSpec
from edgectl.errors import RequestError

from .protocol import json_array

#: Decompression-bomb guard: refuse images above this many pixels before decoding them.
MAX_IMAGE_PIXELS = 40_000_000


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    raise RequestError(f"The model's preprocessing has an invalid '{what}': {value!r}.", status=422)


def preprocess_image(data: bytes, spec: TensorSpec, prep: dict[str, Any]) -> np.ndarray:
    """Decode and preprocess one image into the model's input tensor (batch of 1).

    Raises :class:`RequestError` when the upload is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise RequestError(
                f"The image is {img.width}x{img.height}; at most {MAX_IMAGE_PIXELS} pixels are accepted."
            )
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(f"The upload is not an image Pillow can read ({exc}); send a JPEG or PNG.") from exc
    color = str(prep.get("color", "RGB"))
    img = img.convert("L" if color == "L" else "RGB")
    if "resize" in prep:
        short = _pair(prep["resize"], "resize")[0]
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    if "crop" in prep:
        ch, cw = _pair(prep["crop"], "crop")
        w, h = img.size
        left, top = max(0, (w - cw) // 2), max(0, (h - ch) // 2)
        img = img.crop((left, top, left + cw, top + ch))
    x: np.ndarray = np.asarray(img, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    x = x * np.float32(prep.get("scale", 1.0))
    if "mean" in prep:
        x = x - np.asarray(prep["mean"], dtype=np.float32)
    if "std" in prep:
        x = x / np.asarray(prep["std"], dtype=np.float32)
    if str(prep.get("layout", "NCHW")).upper() == "NCHW":
        x = x.transpose(2, 0, 1)
    x = x[None]
    return _fit(spec, x)


def _fit(spec: TensorSpec, x: np.ndarray) -> np.ndarray:
    if len(spec.shape) != x.ndim or any(d not in (-1, s) for d, s in zip(spec.shape, x.shape, strict=True)):
        raise RequestError(
            f"After preprocessing the image is {list(x.shape)}, but input '{spec.name}' expects {list(spec.shape)}.",
            status=422,
        )
    if np.dtype(spec.dtype).kind in "iu":
        info = np.iinfo(spec.dtype)
        x = np.clip(np.rint(x), info.min, info.max)
    return x.astype(spec.dtype)


def _as_array(value: Any, spec: TensorSpec) -> np.ndarray:
    arr = json_array(spec.name, value if isinstance(value, list) else [value], spec.dtype)
    if not isinstance(value, list):
        arr = arr.reshape(())
    if arr.ndim == len(spec.shape) - 1 and spec.has_batch_dim:
        arr = arr[None]  # one example without its batch dimension
    return arr


def json_inputs(doc: Any, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Plain JSON for ``/predict``: ``{"inputs": [...]}`` for a one-input model, or ``{"<input name>": [...]}``.

    A single example may leave out the batch dimension. Shapes are checked later against the signature.
    """
    if not isinstance(doc, dict):
        raise RequestError('Send a JSON object: {"inputs": [...]} or {"<input name>": [...]}.')
    names = [s.name for s in specs]
    if "inputs" in doc and "inputs" not in names:
        if len(specs) != 1:
            raise RequestError(f'"inputs" works for one-input models only; this model takes {names}: name them.')
        return {specs[0].name: _as_array(doc["inputs"], specs[0])}
    unknown = sorted(set(doc) - set(names))
    missing = sorted(set(names) - set(doc))
    if unknown or missing:
        raise RequestError(
            f"Expected the keys {names}"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
            + "."
        )
    return {s.name: _as_array(doc[s.name], s) for s in specs}


def check_inputs(inputs: dict[str, np.ndarray], specs: list[TensorSpec], max_elements: int) -> None:
    """Check shapes against the signature (names and dtypes are already right)."""
    for spec in specs:
        arr = inputs[spec.name]
        if arr.ndim != len(spec.shape) or any(d not in (-1, s) for d, s in zip(spec.shape, arr.shape, strict=True)):
            raise RequestError(
                f"Input '{spec.name}' has shape {list(arr.shape)}; the model expects {list(spec.shape)}."
            )
        if arr.size == 0 or arr.size > max_elements:
            raise RequestError(f"Input '{spec.name}' has {arr.size} elements; expected 1..{max_elements}.")
