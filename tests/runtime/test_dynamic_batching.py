"""Dynamic batching and the bounded queue, on a real onnxruntime session."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from edgectl.runtime.backends import SessionOptions
from edgectl.runtime.batching import BatchingConfig, BatchStats, ModelWorker, tune_max_batch
from edgectl.runtime.loader import LoadedModel, load_version
from edgectl.runtime.store import ModelStore
from runtime_helpers import reference

from edgectl.errors import OverloadedError


@pytest.fixture
def model(store: ModelStore) -> LoadedModel:
    return load_version(store.version_path("digits", 1), SessionOptions(threads=1))


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(model: LoadedModel) -> None:
    batches: list[BatchStats] = []
    gate = threading.Event()
    real_run = model.session.run

    def slow_first_run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        gate.wait(5)  # hold the worker so that the other requests queue up behind the first
        return real_run(inputs)

    model.session.run = slow_first_run  # type: ignore[method-assign]
    worker = ModelWorker(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=50), on_batch=batches.append)
    xs = [np.full((1, 4), i, dtype=np.float32) for i in range(9)]

    async def main() -> list[dict[str, np.ndarray]]:
        futures = [worker.submit({"x": x}) for x in xs]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(*futures))

    results = asyncio.run(main())
    worker.close()
    for x, res in zip(xs, results, strict=True):
        np.testing.assert_allclose(res["y"], reference(1.0, x), rtol=1e-5, atol=1e-6)
    # 9 requests, at most 8 rows a batch: one full batch of 8 plus one alone (which one depends on thread timing).
    assert sorted(b.requests for b in batches) == [1, 8]
    assert sum(b.rows for b in batches) == 9


def test_full_queue_is_refused_at_once(model: LoadedModel) -> None:
    gate = threading.Event()
    real_run = model.session.run
    model.session.run = lambda inputs: (gate.wait(5), real_run(inputs))[1]  # type: ignore[method-assign]
    worker = ModelWorker(model, BatchingConfig(max_batch_size=1, max_queue=2))

    async def main() -> None:
        x = {"x": np.zeros((1, 4), np.float32)}
        first = worker.submit(x)
        await asyncio.sleep(0.05)  # the worker took the first; two fit in the queue
        queued = [worker.submit(x), worker.submit(x)]
        with pytest.raises(OverloadedError, match="requests queued") as info:
            worker.submit(x)
        assert info.value.status == 429 and info.value.retry_after_s >= 1
        gate.set()
        await asyncio.gather(first, *queued)

    asyncio.run(main())
    assert worker.close()


def test_requests_of_different_shapes_are_not_stacked(tmp_path: Path, model: LoadedModel) -> None:
    batches: list[BatchStats] = []
    worker = ModelWorker(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=20), on_batch=batches.append)

    async def main() -> list[dict[str, np.ndarray]]:
        futs = [worker.submit({"x": np.ones((n, 4), np.float32)}) for n in (1, 2, 3)]
        return list(await asyncio.gather(*futs))

    results = asyncio.run(main())
    worker.close()
    assert [r["y"].shape[0] for r in results] == [1, 2, 3]
    assert sum(b.rows for b in batches) == 6


class _TimedSession:
    """A stand-in session whose run time depends on the batch size as a given function (seconds)."""

    backend = "fake"

    def __init__(self, cost: Callable[[int], float]) -> None:
        self.cost = cost

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(inputs.values())).shape[0]
        time.sleep(self.cost(rows))
        return {"y": np.zeros((rows, 3), np.float32)}

    def close(self) -> None:
        pass


def test_batch_autotune_batches_when_it_pays_and_not_when_it_does_not(model: LoadedModel) -> None:
    assert tune_max_batch(model, 16) >= 2  # the real tiny model: a batch costs about what one row costs
    flat = dataclasses.replace(model, session=_TimedSession(lambda rows: 0.004))
    assert tune_max_batch(flat, 8) == 8
    # cost growing faster than the batch (a compute-bound network with cache pressure): batching never pays
    steep = dataclasses.replace(model, session=_TimedSession(lambda rows: 0.003 * rows * rows))
    assert tune_max_batch(steep, 8) == 1
