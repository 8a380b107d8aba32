"""The golden-output check: a model is only activated when its outputs on the bundle's golden inputs match.

A wrong runtime build (tflite-runtime 2.14 with numpy 2, a broken int8 kernel) can give wrong answers without
raising; this check turns that into a :class:`GoldenMismatchError` before the model takes traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgectl.bundle import Manifest, load_golden
from edgectl.errors import GoldenMismatchError, ManifestError

from .backends.base import Session


@dataclass(frozen=True)
class GoldenResult:
    artifact: str
    max_abs_error: float
    atol: float
    rtol: float


def check_golden(session: Session, bundle_dir: Path, manifest: Manifest, artifact_path: str) -> GoldenResult:
    """Run the golden inputs through ``session`` and compare with the outputs recorded for ``artifact_path``.

    Raises :class:`GoldenMismatchError` naming the output, the error and the tolerance when they disagree.
    """
    art = manifest.artifact(artifact_path)
    inputs, expected_by_art = load_golden(bundle_dir, manifest)
    expected = expected_by_art.get(artifact_path)
    if not expected:
        raise ManifestError(f"golden.npz has no expected outputs for artifact {artifact_path}.")
    atol = float(art.golden_tolerance.get("atol", 1e-4))
    rtol = float(art.golden_tolerance.get("rtol", 1e-3))
    try:
        got = session.run(inputs)
    except Exception as exc:
        raise GoldenMismatchError(
            f"{manifest.bundle_dirname}/{artifact_path} failed on its golden inputs with {session.backend}: {exc}",
            hint="This runtime build cannot run the model; it was not activated.",
        ) from exc
    worst = 0.0
    for name, want in expected.items():
        have = got.get(name)
        if have is None or have.shape != want.shape:
            raise GoldenMismatchError(
                f"{manifest.bundle_dirname}/{artifact_path}: output '{name}' has shape "
                f"{None if have is None else list(have.shape)}, expected {list(want.shape)} "
                f"(backend {session.backend}).",
                hint="The model was not activated.",
            )
        have64 = have.astype(np.float64)
        want64 = want.astype(np.float64)
        if not np.all(np.isfinite(have64)):
            raise GoldenMismatchError(
                f"{manifest.bundle_dirname}/{artifact_path}: output '{name}' holds NaN or Inf on the golden "
                f"inputs (backend {session.backend}).",
                hint="This runtime build gives wrong answers for the model; it was not activated.",
            )
        err = np.abs(have64 - want64)
        worst = max(worst, float(err.max(initial=0.0)))
        if not np.all(err <= atol + rtol * np.abs(want64)):
            raise GoldenMismatchError(
                f"{manifest.bundle_dirname}/{artifact_path}: output '{name}' differs from the golden outputs by "
                f"up to {float(err.max()):.4g} (tolerance atol={atol:g}, rtol={rtol:g}) with backend "
                f"{session.backend}.",
                hint="This runtime build gives wrong answers for the model (a known problem with "
                "tflite-runtime 2.14 and newer int8 models); it was not activated. Install ai-edge-litert.",
            )
    return GoldenResult(artifact=artifact_path, max_abs_error=worst, atol=atol, rtol=rtol)
