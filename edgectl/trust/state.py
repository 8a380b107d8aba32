"""The device's own trust record, beside python-tuf's metadata: installed versions and the last director sequence.

One small JSON file, replaced atomically, so a crash leaves the old record or the new one. Rollback checks read the
installed version of each model from it; replay checks read the last accepted instruction sequence.

Public API: :class:`TrustState`, :class:`StateFile`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgectl.errors import StoreError
from edgectl.fsutil import atomic_write_text

FORMAT = "edgectl-trust-state/1"


@dataclass
class TrustState:
    """``installed``: model name -> the highest version this device installed. ``director_sequence``: the last
    accepted instruction's sequence (0 before the first)."""

    installed: dict[str, int] = field(default_factory=dict)
    director_sequence: int = 0
    last_deployment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "installed": dict(sorted(self.installed.items())),
            "director_sequence": self.director_sequence,
            "last_deployment": self.last_deployment,
        }

    @classmethod
    def from_json(cls, data: Any) -> TrustState:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StoreError(f"Trust state is not in format {FORMAT!r}.")
        try:
            return cls(
                installed={str(k): int(v) for k, v in data["installed"].items()},
                director_sequence=int(data["director_sequence"]),
                last_deployment=data.get("last_deployment"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"Trust state is malformed: {exc}.") from exc


class StateFile:
    """Load and save :class:`TrustState` at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> TrustState:
        if not self.path.exists():
            return TrustState()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            # Refusing to guess matters: an empty record would re-open every rollback.
            raise StoreError(
                f"Cannot read the trust state {self.path}: {exc}.",
                hint="Restore it from backup; deleting it would let older model versions be installed again.",
            ) from exc
        return TrustState.from_json(data)

    def save(self, state: TrustState) -> None:
        atomic_write_text(self.path, json.dumps(state.to_json(), indent=2) + "\n", mode=0o600)
