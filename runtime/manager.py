"""Which model versions the daemon serves, and hot swaps between them.

For each model of the store a :class:`ServedModel` holds the current :class:`ModelWorker`. A swap loads, verifies,
golden-checks and warms the new version in a thread, then switches the reference; requests already queued on the old
worker finish there before it closes. A failed load leaves the old version serving and records why.

:class:`ModelManager` watches the store's ``active`` pointers (every ``poll_interval_s``) and answers the repository
API (load / unload / index).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from edgectl.errors import EdgectlError, OverloadedError, RequestError, StoreError
from edgectl.log import get_logger

from .backends import SessionOptions
from .batching import BatchingConfig, BatchStats, ModelWorker, WorkerClosed, tune_max_batch
from .drift import DriftMonitor
from .loader import LoadedModel, load_version, trim_heap
from .metrics import RuntimeMetrics
from .store import ModelStore

log = get_logger("edgectl.runtime.manager")


class ModelState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADED = "UNLOADED"


@dataclass
class ServedModel:
    """One model name: its serving worker (if any), state and the reason of the last failure."""

    name: str
    worker: ModelWorker | None = None
    state: ModelState = ModelState.LOADING
    reason: str = ""
    #: the (version) whose load failed, so the poller does not retry it every second.
    failed_version: int | None = None
    swap_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    drift: DriftMonitor | None = None
    #: requests admitted and not yet answered (reading the body, decoding, queued, running, encoding).
    in_flight: int = 0

    @property
    def version(self) -> int | None:
        return None if self.worker is None else self.worker.model.version


class ModelManager:
    """Serves the active version of every model in a store."""

    def __init__(
        self,
        store: ModelStore,
        *,
        options: SessionOptions,
        batching: BatchingConfig,
        metrics: RuntimeMetrics,
        poll_interval_s: float = 1.0,
        drain_timeout_s: float = 30.0,
        drift_window: int = 1000,
        autotune_batch: bool = True,
        on_loaded: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.batching = batching
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.drift_window = drift_window
        self.autotune_batch = autotune_batch
        self.on_loaded = on_loaded
        self.models: dict[str, ServedModel] = {}
        self.started = False
        self._poller: asyncio.Task[None] | None = None
        metrics.registry.collectors.append(self._collect)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every active model of the store, then watch the store."""
        await self.sync()
        self.started = True
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for served in self.models.values():
            if served.worker is not None:
                await asyncio.to_thread(served.worker.close, timeout_s=self.drain_timeout_s)
                served.worker = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.sync()
            except Exception:  # the watcher must outlive a bad store entry; the entry is reported in the index
                log.exception("store scan failed")

    async def sync(self) -> None:
        """Bring every model to its store's active version (new models load, changed pointers swap)."""
        names = set(self.store.models()) | set(self.models)
        for name in sorted(names):
            served = self.models.get(name)
            if served is not None and served.state is ModelState.UNLOADED:
                continue  # unloaded through the repository API: stays so until loaded again
            try:
                active = self.store.active_version(name)
            except StoreError as exc:
                self._fail(name, None, str(exc))
                continue
            current = None if served is None else served.version
            if active is None:
                if served is not None and served.worker is not None:
                    await self.unload(name, reason="the store has no active version")
                continue
            if active != current and (served is None or served.failed_version != active):
                with contextlib.suppress(EdgectlError):  # recorded by _fail; any previous version keeps serving
                    await self.load(name, active)

    # -- repository operations ------------------------------------------------------------------

    async def load(self, name: str, version: int | None = None) -> ServedModel:
        """Load ``version`` (default: the store's active one) and switch to it once it passed its checks.

        Raises :class:`StoreError` / :class:`EdgectlError` from loading; the previous version keeps serving then.
        """
        served = self.models.setdefault(name, ServedModel(name))
        async with served.swap_lock:
            if version is None:
                version = self.store.active_version(name)
                if version is None:
                    raise StoreError(f"Model {name!r} has no active version in the store.")
            if served.version == version and served.worker is not None:
                served.state = ModelState.READY
                return served
            if served.worker is None:
                served.state = ModelState.LOADING
            try:
                path = self.store.version_path(name, version)
                model, max_batch = await asyncio.to_thread(self._load_and_tune, path)
            except EdgectlError as exc:
                self._fail(name, version, str(exc))
                raise
            except Exception as exc:  # a backend's own error type: reported, never fatal to the daemon
                self._fail(name, version, f"{type(exc).__name__}: {exc}")
                raise StoreError(f"Loading {name} version {version} failed: {exc}") from exc
            monitor = DriftMonitor.from_reference(model.manifest.reference_stats, window=self.drift_window)
            worker = ModelWorker(
                model,
                dataclasses.replace(self.batching, max_batch_size=max_batch),
                on_batch=self._batch_observer(name, version),
                on_data=monitor.observe if monitor is not None else None,
            )
            served.drift = monitor
            old, served.worker = served.worker, worker
            served.state, served.reason, served.failed_version = ModelState.READY, "", None
            self.metrics.load_time.set(name, str(version), value=model.load_seconds)
            self.metrics.ready.set(name, str(version), value=1)
            if self.on_loaded is not None:
                self.on_loaded(model)
            log.info(
                "serving %s version %d (loaded in %.2fs, max batch %d)", name, version, model.load_seconds, max_batch
            )
        if old is not None:
            self.metrics.ready.remove(name, str(old.model.version))
            # In-flight requests finish on the old session; it closes once its queue is empty.
            asyncio.get_running_loop().run_in_executor(None, self._retire, old)
        return served

    def _retire(self, worker: ModelWorker) -> None:
        if worker.close(timeout_s=self.drain_timeout_s):
            trim_heap()
        else:
            log.error(
                "%s version %d did not drain in %.0fs", worker.model.name, worker.model.version, self.drain_timeout_s
            )

    def _load_and_tune(self, path: Path) -> tuple[LoadedModel, int]:
        model = load_version(path, self.options)
        limit = self.batching.max_batch_size
        tuned = tune_max_batch(model, limit) if self.autotune_batch else limit
        trim_heap()
        return model, tuned

    async def unload(self, name: str, *, reason: str = "unloaded through the repository API") -> None:
        served = self.models.get(name)
        if served is None:
            raise RequestError(f"Model '{name}' is not known; see GET /v2/repository/index.", status=404)
        async with served.swap_lock:
            old, served.worker = served.worker, None
            served.state, served.reason = ModelState.UNLOADED, reason
        if old is not None:
            self.metrics.ready.remove(name, str(old.model.version))
            await asyncio.to_thread(old.close, timeout_s=self.drain_timeout_s)

    def _fail(self, name: str, version: int | None, reason: str) -> None:
        served = self.models.setdefault(name, ServedModel(name))
        served.failed_version = version
        served.reason = reason
        if served.worker is None:
            served.state = ModelState.UNAVAILABLE
        self.metrics.load_failures.inc(name)
        log.error(
            "cannot load %s version %s: %s%s",
            name,
            version,
            reason,
            "; the previous version keeps serving" if served.worker is not None else "",
        )

    # -- serving --------------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> ModelWorker:
        """The worker serving ``name`` (and ``version``, if given). Raises a 404 / 503 :class:`RequestError`."""
        served = self.models.get(name)
        if served is None:
            raise RequestError(f"Unknown model '{name}'; models: {sorted(self.models)}.", status=404)
        worker = served.worker
        if worker is None:
            raise OverloadedError(
                f"Model '{name}' is not ready ({served.state.value}{': ' + served.reason if served.reason else ''}).",
                status=503,
                retry_after_s=5,
            )
        if version is not None and version != worker.model.version:
            raise RequestError(
                f"Model '{name}' version {version} is not loaded; version {worker.model.version} is serving.",
                status=404,
            )
        return worker

    @contextlib.contextmanager
    def admit(self, name: str) -> Iterator[None]:
        """Admission control, before the body is even read: at most ``max_queue + max_batch_size * instances``
        requests per model are in flight, so memory stays bounded under any load. Raises a 429
        :class:`OverloadedError` beyond that, and a 404 :class:`RequestError` for an unknown model."""
        served = self.models.get(name)
        if served is None:
            raise RequestError(f"Unknown model '{name}'; models: {sorted(self.models)}.", status=404)
        limit = self.batching.max_queue + self.batching.max_batch_size * max(1, self.batching.instances)
        if served.in_flight >= limit:
            self.metrics.requests.inc(name, str(served.version or ""), "overloaded")
            raise OverloadedError(
                f"Model '{name}' has {served.in_flight} requests in flight (the limit); retry shortly.", retry_after_s=1
            )
        served.in_flight += 1
        try:
            yield
        finally:
            served.in_flight -= 1

    async def infer(
        self, name: str, version: int | None, prepare: Callable[[LoadedModel], dict[str, np.ndarray]]
    ) -> tuple[LoadedModel, dict[str, np.ndarray]]:
        """Decode with ``prepare`` against the serving version and run it; a swap in between retries on the
        new version. Returns (the model that answered, its outputs)."""
        for _ in range(3):
            worker = self.get(name, version)
            inputs = prepare(worker.model)
            try:
                future = worker.submit(inputs)
            except WorkerClosed:
                await asyncio.sleep(0)
                continue
            return worker.model, await future
        raise OverloadedError(f"Model '{name}' is being swapped; retry.", status=503, retry_after_s=1)

    def index(self) -> list[dict[str, str]]:
        """The repository index: every model of the store and every served one, with state and reason."""
        rows = []
        for name in sorted(set(self.store.models()) | set(self.models)):
            served = self.models.get(name)
            version = served.version if served is not None else None
            if version is None:
                try:
                    version = self.store.active_version(name)
                except StoreError:
                    version = None
            rows.append(
                {
                    "name": name,
                    "version": "" if version is None else str(version),
                    "state": (served.state if served else ModelState.UNAVAILABLE).value,
                    "reason": served.reason if served else "not loaded",
                }
            )
        return rows

    @property
    def ready(self) -> bool:
        """Started, and every model that should serve (not unloaded) is serving."""
        return self.started and all(
            s.worker is not None for s in self.models.values() if s.state is not ModelState.UNLOADED
        )

    def _batch_observer(self, name: str, version: int) -> Callable[[BatchStats], None]:
        v = str(version)

        def observe(stats: BatchStats) -> None:
            self.metrics.batch_size.observe(name, v, value=stats.rows)
            self.metrics.run_time.observe(name, v, value=stats.run_s)
            for wait in stats.queue_wait_s:
                self.metrics.queue_wait.observe(name, value=wait)

        return observe

    def _collect(self) -> None:
        m = self.metrics
        for gauge in (m.drift_psi, m.drift_shift, m.drift_shift_max, m.drift_rows, m.drift_nonfinite, m.drift_range):
            gauge.clear()  # only the versions serving now are reported
        for name, served in self.models.items():
            m.queue_depth.set(name, value=0 if served.worker is None else served.worker.queue_depth)
            if served.drift is None or served.worker is None:
                continue
            v, drift = str(served.version), served.drift
            m.drift_rows.set(name, v, value=drift.rows)
            for (output, kind), score in drift.psi().items():
                m.drift_psi.set(name, v, output, kind, value=score)
            for inp, shift in drift.mean_shift().items():
                for channel, value in enumerate(shift):
                    m.drift_shift.set(name, v, inp, str(channel), value=float(value))
                m.drift_shift_max.set(name, v, inp, value=float(np.abs(shift).max(initial=0.0)))
            for inp in drift.inputs:
                m.drift_nonfinite.set(name, v, inp, value=drift.nonfinite[inp])
                m.drift_range.set(name, v, inp, value=drift.out_of_range[inp])
