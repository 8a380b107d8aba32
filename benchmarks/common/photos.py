"""224x224 crops of real photographs that ship inside scikit-image and scikit-learn (nothing is downloaded).

One seeded stream of crop specs (photo, square box, flip) is drawn; the calibration split takes the even-numbered
specs and the validation split the odd-numbered ones, so the two splits never share a crop, every photo appears in
both splits equally often, and ``photo_crops(n=50)`` is the first 50 crops of ``photo_crops(n=300)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import numpy as np

from .efficientnet import IMAGE_SIZE, LITE_MEAN, LITE_STD

#: Smallest and largest crop side, as a fraction of the photo's shorter side.
SCALE_RANGE = (0.35, 1.0)
SEED = 20240601


class Split(StrEnum):
    CALIBRATION = "calibration"
    VALIDATION = "validation"


@dataclass(frozen=True)
class CropSpec:
    """Where one crop comes from: a photo, a square box (top, left, side) in its pixels, and a horizontal flip."""

    photo: str
    top: int
    left: int
    side: int
    flip: bool


def _skimage_photos() -> dict[str, Callable[[], np.ndarray]]:
    import skimage.data

    # Only images bundled in the scikit-image wheel: the others are fetched with pooch on first use.
    return {
        "astronaut": skimage.data.astronaut,
        "chelsea": skimage.data.chelsea,
        "coffee": skimage.data.coffee,
        "rocket": skimage.data.rocket,
        "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
        "hubble_deep_field": skimage.data.hubble_deep_field,
    }


@cache
def source_photos() -> dict[str, np.ndarray]:
    """Return the source photos by name, as ``(H, W, 3)`` uint8 RGB arrays (loaded once per process)."""
    from sklearn.datasets import load_sample_images

    photos = {name: np.asarray(load()) for name, load in _skimage_photos().items()}
    sample = load_sample_images()
    for filename, image in zip(sample.filenames, sample.images, strict=True):
        photos[filename.rsplit("/", 1)[-1].removesuffix(".jpg")] = np.asarray(image)  # china, flower
    for name, image in photos.items():
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"photo {name!r} is {image.shape} {image.dtype}, expected (H, W, 3) uint8")
    return photos


def crop_specs(count: int) -> list[CropSpec]:
    """Draw the first ``count`` specs of the seeded stream (both splits interleaved, duplicates skipped)."""
    photos = source_photos()
    names = sorted(photos)
    rng = np.random.default_rng(SEED)
    specs: list[CropSpec] = []
    seen: set[CropSpec] = set()
    while len(specs) < count:
        # Pairs of consecutive specs share a photo, so each split cycles through all photos.
        name = names[(len(specs) // 2) % len(names)]
        height, width = photos[name].shape[:2]
        side = round(float(rng.uniform(*SCALE_RANGE)) * min(height, width))
        spec = CropSpec(
            photo=name,
            top=int(rng.integers(0, height - side + 1)),
            left=int(rng.integers(0, width - side + 1)),
            side=side,
            flip=bool(rng.integers(0, 2)),
        )
        if spec not in seen:
            seen.add(spec)
            specs.append(spec)
    return specs


def _render(spec: CropSpec, size: int) -> np.ndarray:
    from skimage.transform import resize

    photo = source_photos()[spec.photo]
    box = photo[spec.top : spec.top + spec.side, spec.left : spec.left + spec.side]
    if spec.flip:
        box = box[:, ::-1]
    # Bilinear with anti-aliasing, like PIL's resize in torchvision's ImageNet preprocessing; result in [0, 1].
    pixels = resize(box, (size, size), order=1, anti_aliasing=True, preserve_range=False)
    normalised = (pixels - np.asarray(LITE_MEAN)) / np.asarray(LITE_STD)
    return normalised.transpose(2, 0, 1).astype(np.float32)


def center_crop(photo: str, *, size: int = IMAGE_SIZE) -> np.ndarray:
    """Return the largest central square of one source photo, preprocessed like :func:`photo_crops`.

    Args:
        photo: a name from :func:`source_photos` (e.g. ``"chelsea"``, ``"coffee"``).
        size: output side in pixels.

    Returns:
        ``(1, 3, size, size)`` float32.

    Raises:
        KeyError: if there is no photo of that name.
    """
    height, width = source_photos()[photo].shape[:2]
    side = min(height, width)
    spec = CropSpec(photo=photo, top=(height - side) // 2, left=(width - side) // 2, side=side, flip=False)
    return _render(spec, size)[None]


def photo_crops(n: int = 256, *, split: Split | str = Split.VALIDATION, size: int = IMAGE_SIZE) -> np.ndarray:
    """Return ``n`` deterministic crops of the bundled photos, preprocessed for EfficientNet-Lite0.

    Args:
        n: how many crops (a few hundred is typical; each costs a few milliseconds to render).
        split: ``"calibration"`` or ``"validation"``; the two never share a crop.
        size: output side in pixels.

    Returns:
        ``(n, 3, size, size)`` float32, NCHW, normalised with EfficientNet-Lite's mean / std.

    Raises:
        ValueError: if ``n`` is not positive or ``split`` is unknown.
    """
    if n <= 0:
        raise ValueError(f"n must be a positive number of crops, got {n}")
    offset = 0 if Split(split) is Split.CALIBRATION else 1
    specs = crop_specs(2 * n)[offset::2]
    return np.stack([_render(spec, size) for spec in specs])
