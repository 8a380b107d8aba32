"""A small CNN trained on scikit-learn's digits (8x8 grey images, 10 classes), with its data splits.

The data ship inside scikit-learn, so nothing is downloaded. Training is seeded and takes a few seconds on two
cores; the trained weights are cached under ``.bench-cache/`` keyed by a hash of this file and the config, so repeated
runs load the very same weights.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgectl.fsutil import atomic_write_bytes

from .cache import cache_dir, code_key


@dataclass(frozen=True, kw_only=True)
class DigitsConfig:
    """How the digits CNN is trained; every field goes into the cache key."""

    seed: int = 0
    #: Fraction of the 1,797 images held out as the labelled validation (test) split.
    test_fraction: float = 0.2
    epochs: int = 25
    batch_size: int = 64
    learning_rate: float = 3e-3
    #: How many training images are returned as calibration data (the first ones of a seeded shuffle).
    calibration_size: int = 256


@dataclass(frozen=True)
class DigitsBench:
    """A trained digits CNN and its data.

    Attributes:
        model: the CNN in eval mode; input ``(N, 1, 8, 8)`` float32 in [0, 1], output ``(N, 10)`` logits.
        calibration: ``(C, 1, 8, 8)`` float32 images from the training split (never from validation).
        validation: ``(V, 1, 8, 8)`` float32 images of the held-out test split.
        labels: ``(V,)`` int64 true labels of ``validation``.
        accuracy: the model's top-1 accuracy on the validation split, measured in PyTorch.
    """

    model: nn.Module
    calibration: np.ndarray
    validation: np.ndarray
    labels: np.ndarray
    accuracy: float


def build_digits_cnn() -> nn.Sequential:
    """The untrained architecture: three 3x3 convolutions, two max-pools, two linear layers (~40k parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4x4 -> 2x2
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _splits(config: DigitsConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are 0..16; scale to [0, 1] so calibration ranges are those of ordinary image inputs.
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=config.test_fraction, random_state=config.seed, stratify=labels
    )
    return x_train, x_test, y_train, y_test


def _train(x_train: np.ndarray, y_train: np.ndarray, config: DigitsConfig) -> nn.Sequential:
    threads = torch.get_num_threads()
    # One thread: the result no longer depends on the machine's core count, and tiny batches gain little from more —
    # while on a busy machine two OpenMP threads contending for cores can make training many times slower.
    torch.set_num_threads(1)
    try:
        return _train_single_thread(x_train, y_train, config)
    finally:
        torch.set_num_threads(threads)


def _train_single_thread(x_train: np.ndarray, y_train: np.ndarray, config: DigitsConfig) -> nn.Sequential:
    torch.manual_seed(config.seed)
    model = build_digits_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    loss_fn = nn.CrossEntropyLoss()
    inputs = torch.from_numpy(x_train)
    targets = torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            optimiser.step()
        schedule.step()
    return model.eval()


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def digits_cnn(config: DigitsConfig | None = None) -> DigitsBench:
    """Return the trained digits CNN with calibration and validation data (trains once, then loads from cache).

    Args:
        config: training parameters; the default reaches about 97-99% validation accuracy.

    Returns:
        A :class:`DigitsBench`.
    """
    config = config or DigitsConfig()
    x_train, x_test, y_train, y_test = _splits(config)
    key = code_key(sys.modules[__name__], config, torch.__version__)
    weights = cache_dir() / f"digits-cnn-{key}.pt"
    model = build_digits_cnn()
    if weights.is_file():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
    else:
        model = _train(x_train, y_train, config)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        atomic_write_bytes(weights, buffer.getvalue())
    rng = np.random.default_rng(config.seed)
    calibration = x_train[rng.permutation(len(x_train))[: config.calibration_size]]
    with torch.no_grad():
        logits = model(torch.from_numpy(x_test)).numpy()
    return DigitsBench(
        model=model,
        calibration=np.ascontiguousarray(calibration),
        validation=np.ascontiguousarray(x_test),
        labels=y_test,
        accuracy=top1_accuracy(logits, y_test),
    )
