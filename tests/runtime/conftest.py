"""Fixtures for the runtime tests: tiny bundles, an installed store, a real daemon process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgectl.runtime.store import ModelStore
from runtime_helpers import REFERENCE, Daemon, make_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """digits v1 (scale 1), v2 (scale 2), v3 (golden outputs that this runtime does not reproduce), an image model."""
    root = tmp_path_factory.mktemp("bundles")
    return {
        "v1": make_bundle(root, version=1, scale=1.0, reference_stats=REFERENCE),
        "v2": make_bundle(root, version=2, scale=2.0),
        "bad": make_bundle(root, version=3, corrupt_golden=True),
        "image": make_bundle(
            root,
            name="colors",
            image=True,
            preprocessing={
                "kind": "image",
                "resize": 8,
                "crop": 8,
                "scale": 1 / 255,
                "layout": "NCHW",
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
            },
        ),
    }


@pytest.fixture
def store(tmp_path: Path, bundles: dict[str, Path]) -> ModelStore:
    s = ModelStore(tmp_path / "models")
    s.install(bundles["v1"])
    return s


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, Path]) -> Iterator[Daemon]:
    """One daemon per module serving digits v1 and the image model (max batch 8)."""
    s = ModelStore(tmp_path_factory.mktemp("served") / "models")
    s.install(bundles["v1"])
    s.install(bundles["image"])
    with Daemon(s.root, "--poll-interval-s", "0.2") as d:
        yield d
