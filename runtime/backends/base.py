"""The backend interface: ``load(path, options) -> Session``; ``Session.run``; ``Session.signature``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np

from edgectl.bundle import TensorSpec


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"


@dataclass(frozen=True)
class SessionOptions:
    """How to run a model. ``threads=0`` means the backend default for this machine."""

    threads: int = 0
    device: Device = Device.CPU
    #: Use XNNPACK where the build has it (onnxruntime provider / LiteRT delegate).
    xnnpack: bool = True
    extra_providers: tuple[str, ...] = field(default_factory=tuple)
    #: Keep freed buffers in an arena for reuse (faster repeated runs; memory never shrinks after a large batch).
    memory_arena: bool = True
    #: Let idle intra-op threads spin between runs (lower latency back to back; burns CPU a server's HTTP loop needs).
    spinning: bool = True

    @staticmethod
    def default_threads() -> int:
        # A Raspberry Pi 4 has 4 cores; leave one for the HTTP loop and the OS.
        cores = os.cpu_count() or 1
        return max(1, min(4, cores - 1 if cores > 2 else cores))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class Session(Protocol):
    """A loaded model, safe to call from one thread at a time per session."""

    @property
    def signature(self) -> Signature: ...

    @property
    def backend(self) -> str: ...

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str
    formats: tuple[str, ...]

    def available(self) -> bool: ...

    def load(self, path: Path, options: SessionOptions) -> Session: ...
