"""Calibration and validation data: ``.npz`` / ``.npy`` arrays or a folder of images with a named preprocessing.

The preprocessing is a plain JSON-able dict (recorded in the manifest) so the device can repeat the same steps:
``{"kind": "image", "color": "RGB", "resize": 256, "crop": 224, "interpolation": "bilinear", "scale": 1/255,
"mean": [...], "std": [...], "layout": "NCHW"}`` — resize the shorter side to ``resize``, centre-crop ``crop``,
multiply by ``scale``, subtract ``mean`` and divide by ``std`` per channel, then lay out as ``layout``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgectl.bundle import TensorSpec
from edgectl.errors import CalibrationDataError, ConfigError, InputFileError, MissingDependencyError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff")
LABEL_KEYS = ("labels", "label", "y", "targets")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PRESETS = ("imagenet", "imagenet-nhwc", "unit", "unit-nhwc")


@dataclass
class Dataset:
    """Samples for each model input, all with the same first (sample) dimension."""

    arrays: dict[str, np.ndarray]
    origin: str

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def head(self, count: int) -> Dataset:
        return Dataset({k: v[:count] for k, v in self.arrays.items()}, self.origin)

    def batches(self, batch_size: int, *, drop_last: bool = False) -> list[dict[str, np.ndarray]]:
        """Consecutive batches in sample order (deterministic)."""
        out = []
        for start in range(0, len(self), batch_size):
            batch = {k: np.ascontiguousarray(v[start : start + batch_size]) for k, v in self.arrays.items()}
            if drop_last and next(iter(batch.values())).shape[0] < batch_size:
                break
            out.append(batch)
        return out


# -- raw reading ----------------------------------------------------------------------------------


def read_arrays(path: Path) -> tuple[list[tuple[str, np.ndarray]], np.ndarray | None]:
    """Read a ``.npz`` / ``.npy`` file: (named arrays in file order, labels if the file holds a labels key)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"Data file {path} does not exist.")
    try:
        if path.suffix.lower() == ".npy":
            return [("arr_0", np.load(path, allow_pickle=False))], None
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                items = [(k, data[k]) for k in data.files]
        else:
            raise InputFileError(f"{path.name}: calibration data must be a .npz, a .npy or a folder of images.")
    except (ValueError, OSError, EOFError) as exc:
        raise CalibrationDataError(f"Cannot read {path}: {exc}.") from exc
    labels = next((v for k, v in items if k in LABEL_KEYS), None)
    arrays = [(k, v) for k, v in items if k not in LABEL_KEYS]
    if not arrays:
        raise CalibrationDataError(f"{path} holds no input arrays.")
    return arrays, labels


def read_labels(path: Path) -> np.ndarray:
    """Integer class labels from ``.npy``, ``.npz`` (key 'labels' or a single array) or ``.txt`` (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Labels file {path} does not exist.")
    try:
        if path.suffix.lower() == ".txt":
            values = np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                key = next((k for k in LABEL_KEYS if k in data.files), data.files[0] if data.files else None)
                if key is None:
                    raise CalibrationDataError(f"{path} holds no arrays; expected a 'labels' array.")
                values = data[key]
        else:
            values = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise CalibrationDataError(f"Cannot read labels from {path}: {exc}.") from exc
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise CalibrationDataError(
            f"Labels in {path} must be a 1-D integer array of class indices, got {values.dtype} {list(values.shape)}."
        )
    return values.astype(np.int64)


# -- images ---------------------------------------------------------------------------------------


def preprocessing_spec(preset: str, *, crop: int | None, channels: int) -> dict[str, Any]:
    """The JSON-able preprocessing for a named preset. ``crop`` overrides the preset's crop size."""
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preprocessing '{preset}'; choose from {', '.join(PRESETS)}.")
    imagenet = preset.startswith("imagenet")
    size = crop or 224
    spec: dict[str, Any] = {
        "kind": "image",
        "color": "L" if channels == 1 else "RGB",
        # ImageNet evaluation resizes to 256 then crops 224: keep that ratio for other sizes.
        "resize": round(size * 256 / 224) if imagenet else size,
        "crop": size,
        "interpolation": "bilinear",
        "scale": 1.0 / 255.0,
        "mean": (IMAGENET_MEAN if imagenet else [0.0, 0.0, 0.0])[:channels] if channels in (1, 3) else [0.0] * channels,
        "std": (IMAGENET_STD if imagenet else [1.0, 1.0, 1.0])[:channels] if channels in (1, 3) else [1.0] * channels,
        "layout": "NHWC" if preset.endswith("nhwc") else "NCHW",
    }
    if channels == 1 and imagenet:
        spec["mean"], spec["std"] = [float(np.mean(IMAGENET_MEAN))], [float(np.mean(IMAGENET_STD))]
    return spec


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), in sorted path order so runs are reproducible."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def preprocess_image(path: Path, spec: dict[str, Any]) -> np.ndarray:
    """Apply ``spec`` to one image file; returns float32 CHW or HWC per ``spec['layout']``."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError("pillow", extra="convert", purpose="Reading calibration images") from exc
    try:
        with Image.open(path) as opened:
            img = opened.convert(spec["color"])
        w, h = img.size
        scale = spec["resize"] / min(w, h)
        size = (max(spec["crop"], round(w * scale)), max(spec["crop"], round(h * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - spec["crop"]) // 2, (size[1] - spec["crop"]) // 2
        img = img.crop((left, top, left + spec["crop"], top + spec["crop"]))
        pixels: np.ndarray = np.asarray(img, dtype=np.float32)
    except OSError as exc:
        raise CalibrationDataError(f"Cannot read image {path}: {exc}.") from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    pixels = pixels * np.float32(spec["scale"])
    pixels = (pixels - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    pixels = pixels.astype(np.float32, copy=False)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1) if spec["layout"] == "NCHW" else pixels)


def iter_images(files: list[Path], spec: dict[str, Any]) -> Iterator[np.ndarray]:
    for path in files:
        yield preprocess_image(path, spec)


# -- binding data to the model's inputs -----------------------------------------------------------


def bind(raw: list[tuple[str, np.ndarray]], inputs: list[TensorSpec], *, origin: str) -> Dataset:
    """Match raw arrays to the model inputs (by name, else by position) and check shape and dtype.

    Raises :class:`CalibrationDataError` naming the input, the expected and the found shape / dtype.
    """
    by_name = dict(raw)
    if all(spec.name in by_name for spec in inputs):
        chosen = [by_name[spec.name] for spec in inputs]
    elif len(raw) == len(inputs):
        chosen = [arr for _, arr in raw]
    else:
        raise CalibrationDataError(
            f"{origin} holds arrays {[k for k, _ in raw]} but the model has inputs {[s.name for s in inputs]}.",
            hint="Name the arrays after the inputs (np.savez(path, **{name: array})).",
        )
    arrays: dict[str, np.ndarray] = {}
    for spec, arr in zip(inputs, chosen, strict=True):
        arrays[spec.name] = check_array(arr, spec, origin=origin)
    counts = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(counts.values())) > 1:
        raise CalibrationDataError(f"{origin}: inputs have different sample counts {counts}.")
    return Dataset(arrays, origin)


def check_array(arr: np.ndarray, spec: TensorSpec, *, origin: str) -> np.ndarray:
    """Check one array (samples along axis 0) against an input spec; float64 is narrowed to float32."""
    arr = np.asarray(arr)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise CalibrationDataError(f"{origin}: the data for input '{spec.name}' is empty; give at least one sample.")
    want = np.dtype(spec.dtype)
    if arr.dtype != want:
        lossless_float = arr.dtype == np.float64 and want == np.float32
        if not lossless_float:
            raise CalibrationDataError(
                f"{origin}: input '{spec.name}' has dtype {arr.dtype}, the model expects {want}.",
                hint=f"Convert the array with .astype('{want}') (and check its scaling).",
            )
        arr = arr.astype(want)
    tail = spec.shape[1:]
    if arr.ndim != len(spec.shape) or any(w not in (-1, h) for w, h in zip(tail, arr.shape[1:], strict=True)):
        expected = "x".join("N" if i == 0 else ("?" if d == -1 else str(d)) for i, d in enumerate(spec.shape))
        raise CalibrationDataError(
            f"{origin}: input '{spec.name}' has shape {'x'.join(map(str, arr.shape))}, the model expects {expected} "
            "(samples along the first axis)."
        )
    return np.ascontiguousarray(arr)


def load_dataset(
    path: Path,
    inputs: list[TensorSpec],
    *,
    limit: int,
    preprocessing: dict[str, Any] | None,
) -> tuple[Dataset, np.ndarray | None]:
    """Load at most ``limit`` samples from a file or an image folder; returns (dataset, labels found in the file).

    Image folders need ``preprocessing`` (a spec from :func:`preprocessing_spec`) and a single-input model.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"Calibration/validation data {path} does not exist.")
    if path.is_dir():
        if preprocessing is None:
            raise ConfigError(
                f"{path} is an image folder: name its preprocessing.",
                hint=f"Pass --preprocess with one of {', '.join(PRESETS)}.",
            )
        if len(inputs) != 1:
            raise CalibrationDataError(
                f"An image folder can only feed a single-input model; this one has {len(inputs)}."
            )
        files = list_images(path)[:limit]
        if not files:
            raise CalibrationDataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}); it cannot calibrate.")
        stacked = np.stack(list(iter_images(files, preprocessing)))
        return bind([(inputs[0].name, stacked)], inputs, origin=str(path)), None
    raw, labels = read_arrays(path)
    raw = [(k, v[:limit] if v.ndim else v) for k, v in raw]
    return bind(raw, inputs, origin=str(path)), None if labels is None else np.asarray(labels)[:limit]
