"""edgectl.runtime — what runs on the device. Never imports torch.

Public API:

- :class:`ModelStore`, :class:`ModelEntry` — the on-disk model store (install, activate, rollback, list, remove);
  the fleet agent drives the runtime through it.
- :func:`load_version`, :func:`select_artifact`, :class:`LoadedModel` — verify, load, golden-check and warm one
  version with the backend that is installed.
- :class:`ServeConfig` and :func:`serve` (in :mod:`edgectl.runtime.daemon`) — the HTTP daemon.
- :mod:`edgectl.runtime.backends` — the backend interface (onnxruntime, LiteRT).
"""

from .config import ServeConfig
from .loader import LoadedModel, load_version, select_artifact
from .store import ModelEntry, ModelStore

__all__ = ["LoadedModel", "ModelEntry", "ModelStore", "ServeConfig", "load_version", "select_artifact"]
