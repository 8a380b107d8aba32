"""A small closed-loop HTTP/1.1 load generator on asyncio streams (keep-alive, N concurrent clients).

Each client sends its next request as soon as the previous answer arrived; the run stops after ``total`` requests
or ``max_seconds``. Latency, status codes, timeouts and connection errors are recorded per request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, host: str) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(self.body)}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class LoadResult:
    concurrency: int
    sent: int
    seconds: float
    statuses: dict[str, int]
    timeouts: int
    conn_errors: int
    latencies_ms: list[float]

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def errors(self) -> int:
        """Failures that are not a fast, well-formed refusal (429/503 with Retry-After count as refusals)."""
        refused = self.statuses.get("429", 0) + self.statuses.get("503", 0)
        return self.sent - self.ok - refused

    def summary(self) -> dict[str, object]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {
            "concurrency": self.concurrency,
            "requests": self.sent,
            "ok": self.ok,
            "refused_429_503": self.sent - self.ok - self.errors,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.ok / self.seconds, 1) if self.seconds > 0 else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "statuses": self.statuses,
        }


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def run_load(
    port: int, request: Request, *, concurrency: int, total: int, max_seconds: float, timeout_s: float = 10.0
) -> LoadResult:
    """Drive ``concurrency`` keep-alive clients until ``total`` requests were sent or ``max_seconds`` passed."""
    payload = request.encode(f"127.0.0.1:{port}")
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    counters = {"sent": 0, "timeouts": 0, "conn": 0}
    deadline = time.perf_counter() + max_seconds

    async def client() -> None:
        reader = writer = None
        while counters["sent"] < total and time.perf_counter() < deadline:
            counters["sent"] += 1
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(payload)
                assert reader is not None
                status = await asyncio.wait_for(_read_response(reader), timeout_s)
            except TimeoutError:
                counters["timeouts"] += 1
                statuses["timeout"] += 1
                _close(writer)
                writer = None
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                counters["conn"] += 1
                statuses["connection_error"] += 1
                _close(writer)
                writer = None
                continue
            latencies.append((time.perf_counter() - start) * 1e3)
            statuses[str(status)] += 1
        _close(writer)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return LoadResult(
        concurrency=concurrency,
        sent=counters["sent"],
        seconds=time.perf_counter() - start,
        statuses=dict(statuses),
        timeouts=counters["timeouts"],
        conn_errors=counters["conn"],
        latencies_ms=latencies,
    )


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
