"""Smoke tests of the benchmarks' model zoo: the models are real and right, the data deterministic and offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.common import (
    DigitsConfig,
    center_crop,
    digits_cnn,
    efficientnet_lite0,
    interleaved_latency,
    markdown_table,
    photo_crops,
)

# ImageNet class indices: 281-285 are domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian cat);
# 967 espresso, 968 cup.
CATS = set(range(281, 286))
COFFEE = {967, 968}


def test_digits_cnn_trains_above_90_percent_and_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECTL_BENCH_CACHE", str(tmp_path))
    first = digits_cnn()
    assert first.accuracy > 0.90
    assert first.validation.shape == (360, 1, 8, 8) and first.labels.shape == (360,)
    assert first.calibration.shape == (DigitsConfig().calibration_size, 1, 8, 8)
    assert first.calibration.dtype == np.float32 and 0.0 <= first.calibration.min() <= first.calibration.max() <= 1.0
    assert len(list(tmp_path.glob("digits-cnn-*.pt"))) == 1

    second = digits_cnn()  # loaded from the cache: the very same weights
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert second.accuracy == first.accuracy


def test_efficientnet_lite0_recognises_a_cat_and_a_coffee_cup() -> None:
    model = efficientnet_lite0()
    assert not model.training
    inputs = torch.from_numpy(np.concatenate([center_crop("chelsea"), center_crop("coffee")]))
    with torch.no_grad():
        top1 = model(inputs).argmax(dim=1).tolist()
    assert top1[0] in CATS
    assert top1[1] in COFFEE


def test_photo_crops_are_deterministic_and_splits_share_no_crop() -> None:
    validation = photo_crops(12)
    calibration = photo_crops(12, split="calibration")
    assert validation.shape == (12, 3, 224, 224) and validation.dtype == np.float32
    assert np.array_equal(validation, photo_crops(12))
    assert np.array_equal(validation[:5], photo_crops(5))  # a smaller request is a prefix of a larger one
    flat_val = validation.reshape(12, -1)
    flat_cal = calibration.reshape(12, -1)
    assert not any(np.array_equal(v, c) for v in flat_val for c in flat_cal)
    assert validation.min() >= -1.0 and validation.max() <= 1.0


def test_photo_crops_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        photo_crops(0)
    with pytest.raises(ValueError):
        photo_crops(2, split="training")


def test_interleaved_latency_reports_each_variant_per_round() -> None:
    calls = {"a": 0, "b": 0}

    def make(name: str) -> Callable[[], None]:
        def call() -> None:
            calls[name] += 1

        return call

    result = interleaved_latency({"a": make("a"), "b": make("b")}, rounds=3, iterations=4, warmup=2)
    assert calls == {"a": 2 + 3 * 4, "b": 2 + 3 * 4}
    assert len(result["a"].round_p50_ms) == 3
    assert 0.0 <= result["a"].p50_ms <= result["a"].p95_ms
    with pytest.raises(ValueError):
        interleaved_latency({}, rounds=1, iterations=1)


def test_markdown_table_escapes_pipes() -> None:
    table = markdown_table(["target", "met?"], [["a | b", "yes"]])
    assert table.splitlines() == ["| target | met? |", "| --- | --- |", "| a \\| b | yes |"]
