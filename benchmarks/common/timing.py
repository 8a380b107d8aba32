"""Latency measured in interleaved rounds, so machine noise hits every variant alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    """One variant's latency in milliseconds: the median over rounds of each round's p50 and p95."""

    p50_ms: float
    p95_ms: float
    round_p50_ms: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "p50_ms": round(self.p50_ms, 4),
            "p95_ms": round(self.p95_ms, 4),
            "round_p50_ms": [round(x, 4) for x in self.round_p50_ms],
        }


def interleaved_latency(
    variants: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 7,
    iterations: int = 30,
    warmup: int = 5,
) -> dict[str, Latency]:
    """Time each variant in A/B/A/B rounds and report the median of the per-round percentiles.

    Each round runs every variant ``iterations`` times back to back; the order of variants rotates from round to
    round so none always runs first (after another's cache pollution) or last.

    Args:
        variants: name -> a call that does one inference (inputs bound in advance).
        rounds: how many rounds; the median over rounds discards a round spoiled by a burst of load.
        iterations: timed calls per variant per round.
        warmup: untimed calls per variant before the first round.

    Returns:
        name -> :class:`Latency`.

    Raises:
        ValueError: if there are no variants or a count is not positive.
    """
    if not variants or rounds <= 0 or iterations <= 0 or warmup < 0:
        raise ValueError("need at least one variant, and positive rounds and iterations")
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = variants[name]
            times = np.empty(iterations)
            for i in range(iterations):
                start = time.perf_counter()
                call()
                times[i] = time.perf_counter() - start
            samples[name].append((float(np.percentile(times, 50)) * 1e3, float(np.percentile(times, 95)) * 1e3))
    return {
        name: Latency(
            p50_ms=float(np.median([p50 for p50, _ in rounds_])),
            p95_ms=float(np.median([p95 for _, p95 in rounds_])),
            round_p50_ms=tuple(p50 for p50, _ in rounds_),
        )
        for name, rounds_ in samples.items()
    }
