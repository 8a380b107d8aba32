"""Run every benchmark (``benchmarks/<area>/run.py``) in name order, each in its own process.

Usage: ``python benchmarks/run_all.py [area ...]`` from anywhere; with no areas, all of them run. Exits non-zero
if any benchmark failed (the others still run).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def discover() -> list[str]:
    """Names of the areas that have a ``run.py``, sorted."""
    return sorted(path.parent.name for path in (ROOT / "benchmarks").glob("*/run.py"))


def main(argv: list[str]) -> int:
    available = discover()
    wanted = argv or available
    unknown = [area for area in wanted if area not in available]
    if unknown:
        print(f"error: no benchmark named {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for area in wanted:
        print(f"== benchmarks/{area} ==", flush=True)
        start = time.perf_counter()
        # A fresh interpreter per benchmark: no thread pools, caches or imported state leak from one to the next.
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{area}.run"], cwd=ROOT)
        outcome = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"== benchmarks/{area}: {outcome} in {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(area)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
