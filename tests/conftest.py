"""Shared set-up. Models used in tests are tiny and built by the tests, so the suite stays fast on two cores.

The ``benchmarks`` package lives at the repository root, outside the installed distribution; the model-zoo smoke
tests and the tuner test (which shares the benchmark's outlier model) import it, so the root goes on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
