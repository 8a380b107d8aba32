"""Per-model dynamic batching: a bounded queue drained by worker threads, off the event loop.

:meth:`ModelWorker.submit` is called on the event loop; it refuses at once (``OverloadedError``, 429) when the queue
is full, so memory stays bounded by ``max_queue`` requests. A worker thread takes the oldest request and, when the
model has a batch dimension, stacks compatible queued requests (same non-batch shapes) up to ``max_batch_size`` rows.
It waits up to ``max_queue_delay_ms`` for more only while there is load (the previous batch held more than one
request), so a lone client never pays the delay. Results go back to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgectl.errors import OverloadedError, RequestError
from edgectl.log import get_logger

from .loader import LoadedModel

log = get_logger("edgectl.runtime.batching")


@dataclass(frozen=True, kw_only=True)
class BatchingConfig:
    """Limits for one model's queue and workers."""

    max_batch_size: int = 8
    max_queue_delay_ms: float = 2.0
    max_queue: int = 64
    instances: int = 1


class WorkerClosed(Exception):
    """The worker stopped taking requests (its model is being swapped out); submit to the new one."""


@dataclass(frozen=True)
class BatchStats:
    rows: int
    requests: int
    queue_wait_s: list[float]
    run_s: float


class _Job:
    __slots__ = ("enqueued", "future", "inputs", "key", "loop", "rows")

    def __init__(self, inputs: dict[str, np.ndarray], loop: asyncio.AbstractEventLoop, batchable: bool) -> None:
        self.inputs = inputs
        self.loop = loop
        self.future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        self.enqueued = time.perf_counter()
        first = next(iter(inputs.values()))
        self.rows = int(first.shape[0]) if batchable and first.ndim else 1
        # Requests stack only when every input agrees on everything but the batch dimension.
        self.key = tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(inputs.items())) if batchable else None


def _deliver(job: _Job, result: dict[str, np.ndarray] | None, error: BaseException | None) -> None:
    def _set() -> None:
        if job.future.done():  # the client went away (cancelled)
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result or {})

    # A closed loop (shutdown) has nobody waiting any more.
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(_set)


class ModelWorker:
    """The queue and worker threads of one loaded model version."""

    def __init__(
        self,
        model: LoadedModel,
        config: BatchingConfig,
        *,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_data: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], None] | None = None,
    ) -> None:
        """Args: model: the loaded version; config: queue and batch limits; on_batch: called with each batch's
        statistics; on_data: called with each batch's (inputs, outputs) after the answers went out (drift)."""
        self.model = model
        self.config = config
        self._batchable = model.batchable and config.max_batch_size > 1
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = 0
        self._on_batch = on_batch
        self._on_data = on_data
        # Set when the last batch held more than one request: under load it is worth waiting for company.
        self._loaded = False
        # Requests the collecting worker still waits for (0: no worker is collecting a batch).
        self._need = 0
        self._threads = [
            threading.Thread(target=self._loop, name=f"edgectl-{model.name}-{model.version}-{i}", daemon=True)
            for i in range(max(1, config.instances))
        ]
        for t in self._threads:
            t.start()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return len(self._queue) + self._busy

    def submit(self, inputs: dict[str, np.ndarray]) -> asyncio.Future[dict[str, np.ndarray]]:
        """Queue one request (call on the event loop). Raises :class:`OverloadedError` when the queue is full and
        :class:`WorkerClosed` when this worker is being retired."""
        job = _Job(inputs, asyncio.get_running_loop(), self._batchable)
        with self._cond:
            if self._closing:
                raise WorkerClosed
            if len(self._queue) >= self.config.max_queue:
                raise OverloadedError(
                    f"Model '{self.model.name}' has {len(self._queue)} requests queued (the limit); retry shortly.",
                    retry_after_s=1,
                )
            self._queue.append(job)
            # Wake a worker only when it can act: an idle one for the first request, a collecting one once its
            # batch can be filled. Waking it for every arrival would hand the GIL back and forth per request.
            if self._need == 0 or len(self._queue) >= self._need:
                self._cond.notify()
        return job.future

    def close(self, *, timeout_s: float = 30.0) -> bool:
        """Stop taking requests, let the workers finish what is queued, then close the session.
        Returns False when the workers did not finish within ``timeout_s`` (the session is then left open)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            return False
        self.model.close()
        return True

    # -- worker threads ---------------------------------------------------------------------------

    def _take_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            self._busy += 1
            batch = [first]
            if first.key is None:
                return batch
            rows = first.rows
            deadline = first.enqueued + self.config.max_queue_delay_ms / 1000.0
            wait = self._loaded
            while rows < self.config.max_batch_size:
                for job in list(self._queue):
                    if job.key == first.key and rows + job.rows <= self.config.max_batch_size:
                        self._queue.remove(job)
                        batch.append(job)
                        rows += job.rows
                remaining = deadline - time.perf_counter()
                if not wait or remaining <= 0 or rows >= self.config.max_batch_size or self._closing:
                    break
                self._need = self.config.max_batch_size - rows
                try:
                    self._cond.wait(remaining)
                finally:
                    self._need = 0
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy -= 1

    def _run(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        waits = [start - j.enqueued for j in batch]
        try:
            if len(batch) == 1:
                stacked = batch[0].inputs
                out = self.model.session.run(stacked)
                results = [out]
            else:
                stacked = {n: np.concatenate([j.inputs[n] for j in batch]) for n in batch[0].inputs}
                out = self.model.session.run(stacked)
                cuts = np.cumsum([j.rows for j in batch])[:-1]
                split = {n: np.split(a, cuts) for n, a in out.items()}
                results = [{n: parts[i] for n, parts in split.items()} for i in range(len(batch))]
        except Exception as exc:  # a backend error belongs to these requests, never to the worker thread
            err = exc if isinstance(exc, RequestError) else RequestError(f"The model could not run this input: {exc}")
            for job in batch:
                _deliver(job, None, err)
            return
        finally:
            self._loaded = len(batch) > 1
        run_s = time.perf_counter() - start
        for job, res in zip(batch, results, strict=True):
            _deliver(job, res, None)
        try:  # observers run after the answers went out, so they add no latency to this batch
            if self._on_batch is not None:
                self._on_batch(BatchStats(sum(j.rows for j in batch), len(batch), waits, run_s))
            if self._on_data is not None and self._batchable:
                self._on_data(stacked, out)
        except Exception:  # an observer's bug must never stop the worker
            log.exception("batch observer failed for %s", self.model.name)


def _rows_per_second(model: LoadedModel, rows: int, rng: np.random.Generator) -> float:
    feed = {
        t.name: rng.standard_normal([rows if i == 0 else d for i, d in enumerate(t.shape)]).astype(t.dtype)
        for t in model.inputs
    }
    model.session.run(feed)  # the first run at a new size allocates; time the next ones
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        model.session.run(feed)
        best = min(best, time.perf_counter() - start)
    return rows / max(best, 1e-9)


def tune_max_batch(model: LoadedModel, limit: int, *, gain: float = 1.25) -> int:
    """The batch size worth stacking to on this device: the power of two up to ``limit`` with the most rows per
    second, if it beats one row at a time by ``gain`` (a clear win, not noise); otherwise 1 (batching off).

    On a CPU a large convolutional network is compute-bound: a batch costs as much per row as single runs, or more
    (cache pressure), so stacking only adds queueing delay. A tiny model gains a lot. Doubling stops at the first
    size that does clearly worse than the best so far, so a slow model pays for two or three extra runs at load.
    """
    if not model.batchable or limit <= 1:
        return 1
    if any(d < 0 for t in model.inputs for d in t.shape[1:]) or any(t.dtype == "bool" for t in model.inputs):
        return limit  # no representative input to time with: trust the configured limit
    rng = np.random.default_rng(0)
    try:
        single = best_rate = _rows_per_second(model, 1, rng)
        best, size = 1, 2
        while size <= limit:
            rate = _rows_per_second(model, size, rng)
            # Inference speed is not the whole story: every batch also costs a queue hand-off and a response per
            # request, which a bigger batch shares out. So a larger size that keeps up (within 10%) wins a tie.
            if rate >= 0.9 * best_rate:
                best, best_rate = size, max(rate, best_rate)
            elif rate * gain < best_rate:
                break
            size = limit if size < limit < size * 2 else size * 2
        # One row is timed again at the end: a burst of load during the first timing must not make batching look good.
        single = max(single, _rows_per_second(model, 1, rng))
    except Exception as exc:  # e.g. integer inputs that random values push out of range
        log.warning("cannot time batches of %s (%s); using max batch %d", model.name, exc, limit)
        return limit
    return best if best_rate >= single * gain else 1
