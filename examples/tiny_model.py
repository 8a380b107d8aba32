"""A tiny image classifier for trying `edgectl convert` (used by examples/edgectl.toml).

cd examples
python tiny_model.py                       # writes calib.npz (random images: for a dry run only)
edgectl convert --config edgectl.toml      # -> bundles/tiny-cnn-1/ and its tar and reports
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def build() -> nn.Module:
    """The factory named in edgectl.toml (``source = "tiny_model:build"``)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    np.savez("calib.npz", input=rng.standard_normal((64, 3, 32, 32)).astype(np.float32))
    print("wrote calib.npz")
