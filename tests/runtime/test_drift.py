"""Drift scores: PSI on outputs, standardised mean shift per input channel, NaN / out-of-range counts."""

from __future__ import annotations

import numpy as np
import pytest
from edgectl.runtime.drift import DriftMonitor, psi
from runtime_helpers import REFERENCE


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    ref = np.array([25, 25, 25, 25])
    assert psi(ref, ref * 3) == pytest.approx(0.0)
    mild, strong = psi(ref, [30, 25, 25, 20]), psi(ref, [70, 10, 10, 10])
    assert 0 < mild < 0.1 < strong
    # The textbook value: sum((a - e) * ln(a / e)) over bins
    a, e = np.array([0.7, 0.1, 0.1, 0.1]), np.full(4, 0.25)
    assert strong == pytest.approx(float(np.sum((a - e) * np.log(a / e))))


def test_monitor_measures_mean_shift_per_channel_over_a_rolling_window() -> None:
    mon = DriftMonitor(REFERENCE, window=100)
    rng = np.random.default_rng(0)
    shifted = rng.standard_normal((100, 4)) + np.array([0.0, 0.0, 2.0, 0.0])
    mon.observe({"x": shifted}, {"y": np.full((100, 3), 1 / 3)})
    shift = mon.mean_shift()["x"]
    assert abs(shift[2] - 2.0) < 0.3 and np.all(np.abs(shift[[0, 1, 3]]) < 0.3)
    for _ in range(10):  # in-distribution traffic pushes the shifted batch out of the window
        mon.observe({"x": rng.standard_normal((10, 4))}, {"y": np.full((10, 3), 1 / 3)})
    assert mon.rows == 100
    assert np.all(np.abs(mon.mean_shift()["x"]) < 0.4)


def test_monitor_counts_non_finite_and_out_of_range_values_and_scores_outputs() -> None:
    mon = DriftMonitor(REFERENCE, window=1000)
    x = np.zeros((2, 4))
    x[0, 0], x[1, 1], x[1, 2] = np.nan, 9.0, -5.0
    one_class = np.tile([0.9, 0.05, 0.05], (2, 1))
    mon.observe({"x": x}, {"y": one_class})
    assert mon.nonfinite["x"] == 1 and mon.out_of_range["x"] == 2
    scores = mon.psi()
    assert scores[("y", "top1")] > 1.0  # every answer is class 0, the reference is balanced
    assert scores[("y", "histogram")] > 0.5


def test_missing_or_malformed_reference_gives_no_monitor() -> None:
    assert DriftMonitor.from_reference({}, window=10) is None
    assert DriftMonitor.from_reference({"inputs": {"x": {"mean": [0.0]}}}, window=10) is None
