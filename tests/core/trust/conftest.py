"""Fixtures for the trust tests (helpers live in trust_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from trust_helpers import Clock, World

from edgectl.trust import MemoryFetcher, ModelRepository, RepoSettings


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_world(tmp_path: Path, clock: Clock) -> Callable[..., World]:
    def _make(settings: RepoSettings | None = None, root_keys_dir: Path | None = None) -> World:
        repo = ModelRepository.create(
            tmp_path / "repo", settings=settings or RepoSettings(), root_keys_dir=root_keys_dir, clock=clock
        )
        net = MemoryFetcher.from_dir(repo.layout.root)
        store = tmp_path / "store"
        store.mkdir()
        return World(tmp=tmp_path, clock=clock, repo=repo, net=net, store=store, device_dir=tmp_path / "device")

    return _make


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()
