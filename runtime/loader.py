"""Load one version directory of the model store into a ready session.

Loading is the same everywhere (``models install``, daemon start, hot swap): verify the bundle, pick the first
artifact (manifest order = preference) whose format an installed backend runs, load it, check the golden outputs
with that very session, and warm it up. Only a model that passed all of this takes traffic.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgectl.bundle import Artifact, Manifest, TensorSpec, verify_bundle
from edgectl.errors import GoldenMismatchError, MissingDependencyError, ModelLoadError

from .backends import Backend, Session, SessionOptions, backend_for
from .golden import GoldenResult, check_golden


@dataclass
class LoadedModel:
    """A verified, golden-checked and warmed session for one model version."""

    manifest: Manifest
    artifact: Artifact
    session: Session
    path: Path
    load_seconds: float
    golden: GoldenResult | None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.manifest.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.manifest.outputs

    @property
    def batchable(self) -> bool:
        """Whether requests can be stacked along axis 0 (every input and output has a dynamic first dim)."""
        return all(t.has_batch_dim for t in [*self.manifest.inputs, *self.manifest.outputs])

    def close(self) -> None:
        self.session.close()


def select_artifact(manifest: Manifest) -> tuple[Artifact, Backend]:
    """The first artifact (in manifest order) that an installed backend can run, with that backend.

    Raises :class:`MissingDependencyError` naming what to install when no backend runs any artifact.
    """
    missing: list[MissingDependencyError] = []
    for art in manifest.artifacts:
        try:
            return art, backend_for(art.format)
        except MissingDependencyError as exc:
            missing.append(exc)
    if missing:
        raise missing[0]
    raise ModelLoadError(f"Bundle {manifest.bundle_dirname} lists no artifacts.")


def _warmup_feed(specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    # Dynamic dims become 1: the first run allocates the arena and JIT-compiles kernels for the common case.
    return {t.name: np.zeros([1 if d < 0 else d for d in t.shape], dtype=t.dtype) for t in specs}


def load_version(path: Path, options: SessionOptions, *, check: bool = True, warmup_runs: int = 2) -> LoadedModel:
    """Verify, load, golden-check and warm the bundle unpacked at ``path``.

    Args:
        path: a version directory (an unpacked bundle).
        options: backend options (threads, providers).
        check: run the golden check (always on in the daemon and at install; off only for tests of failure paths).
        warmup_runs: inference runs on zero inputs before the model takes traffic.

    Raises:
        BundleError: the files do not match the manifest.
        MissingDependencyError: no installed backend runs any artifact.
        ModelLoadError: the backend cannot load the artifact.
        GoldenMismatchError: the outputs on the golden inputs are wrong with this runtime.
    """
    start = time.perf_counter()
    manifest = verify_bundle(path)
    artifact, backend = select_artifact(manifest)
    session = backend.load(path / artifact.path, options)
    try:
        golden = check_golden(session, path, manifest, artifact.path) if check and manifest.golden else None
        feed = _warmup_feed(manifest.inputs)
        for _ in range(warmup_runs):
            try:
                session.run(feed)
            except Exception as exc:  # backends raise their own types; a model that cannot run is not served
                raise GoldenMismatchError(
                    f"{manifest.bundle_dirname}/{artifact.path} failed its warm-up run with {session.backend}: {exc}",
                    hint="The model was not activated.",
                ) from exc
    except BaseException:
        session.close()
        raise
    return LoadedModel(
        manifest=manifest,
        artifact=artifact,
        session=session,
        path=path,
        load_seconds=time.perf_counter() - start,
        golden=golden,
    )


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Loading, the golden check and the warm-up free tens of MB that glibc would otherwise keep mapped for ever; on a
    device that is resident memory other processes cannot use.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
