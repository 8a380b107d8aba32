"""What a benchmark ran on: CPU model and the instruction-set flags that decide int8 speed, cores, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

#: Flags that change how fast int8 (and bf16) kernels run: VNNI / dot-product instructions, AMX, wide vectors.
INT8_FLAGS = (
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "asimddp",  # aarch64 dot product (Raspberry Pi 5, Jetson Orin)
    "i8mm",  # aarch64 int8 matrix multiply
)
PACKAGES = ("torch", "onnxruntime", "onnx", "numpy", "scikit-learn", "edgectl")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, flags


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Return a JSON-ready description of this machine and the library versions in use."""
    model, flags = _cpuinfo()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": model,
        "architecture": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "int8_flags": {flag: flag in flags for flag in INT8_FLAGS},
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {package: _version(package) for package in PACKAGES},
    }
