"""The benchmark cache: ``<repo>/.bench-cache/`` (gitignored), entries keyed by a hash of what produced them."""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Return the cache folder, creating it; ``EDGECTL_BENCH_CACHE`` overrides the default ``<repo>/.bench-cache``."""
    path = Path(os.environ.get("EDGECTL_BENCH_CACHE", REPO_ROOT / ".bench-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def code_key(module: ModuleType, *params: object) -> str:
    """A short hash of a module's source and the parameters, so a cached result is redone when either changes.

    Args:
        module: the module whose source produced the cached result.
        params: anything else that decides the result (configs, library versions); hashed through ``repr``.

    Returns:
        16 hex characters.
    """
    digest = hashlib.sha256(inspect.getsource(module).encode("utf-8"))
    for param in params:
        digest.update(repr(param).encode("utf-8"))
    return digest.hexdigest()[:16]
