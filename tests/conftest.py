"""Shared fixtures. Models used in tests are tiny and built here, so the suite stays fast on two cores."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
