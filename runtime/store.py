"""The model store: ``<store>/<model>/<version>/`` (unpacked, verified bundles) and ``<store>/<model>/active``.

Every change is a rename, so a crash or ``kill -9`` at any instant leaves the old or the new state, never a mix:

- a new version is unpacked and checked in ``<store>/.staging/`` and renamed into place in one step (for a new
  model the whole ``<model>/`` directory, pointer included, appears in one rename);
- ``active`` is a small file holding the version number, replaced with temp file + fsync + ``os.replace``;
- removal renames the directory into ``.staging/`` first, then deletes it.

Writers take an exclusive ``flock`` on ``<store>/.lock`` (two installs never race) and clear what a killed writer
left in ``.staging/``. Readers (the daemon) take no lock: version directories never change once in place.

Public API: :class:`ModelStore`, :class:`ModelEntry`. The fleet agent drives the runtime through this class.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgectl.bundle import MANIFEST, Manifest, check_name, read_manifest, unpack_bundle, verify_bundle
from edgectl.errors import EdgectlError, ManifestError, StoreError
from edgectl.fsutil import atomic_write_text, fsync_dir
from edgectl.log import get_logger

from .backends import SessionOptions
from .loader import load_version

log = get_logger("edgectl.runtime.store")

ACTIVE = "active"
PREVIOUS = "previous"
STAGING = ".staging"
LOCK = ".lock"


@dataclass(frozen=True)
class ModelEntry:
    """One model of the store: its installed versions (ascending) and the active one (None if none)."""

    name: str
    versions: tuple[int, ...]
    active: int | None


class ModelStore:
    """A directory of models, each with side-by-side versions and one atomically replaced ``active`` pointer."""

    def __init__(self, root: Path, *, options: SessionOptions | None = None, lock_timeout_s: float = 30.0) -> None:
        """Args: root: the store directory (created on first write); options: backend options used for the
        golden check at install (the same backend that will serve the model); lock_timeout_s: how long a writer
        waits for another writer before :class:`StoreError`."""
        self.root = Path(root)
        self.options = options or SessionOptions()
        self.lock_timeout_s = lock_timeout_s

    # -- reading (no lock) ------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of the models in the store, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> tuple[int, ...]:
        mdir = self.root / name
        if not mdir.is_dir():
            return ()
        return tuple(sorted(int(p.name) for p in mdir.iterdir() if p.is_dir() and p.name.isdigit()))

    def active_version(self, name: str) -> int | None:
        """The active version of ``name`` or None (no such model, or nothing activated yet)."""
        return self._read_pointer(self.root / name / ACTIVE)

    def version_path(self, name: str, version: int) -> Path:
        """The directory of an installed version. Raises :class:`StoreError` if it is not installed."""
        path = self.root / name / str(version)
        if not path.is_dir():
            raise StoreError(
                f"Model {name!r} has no version {version} in {self.root}; installed: {list(self.versions(name))}.",
                hint="Install it with: edgectl models install <bundle.tar> --store " + str(self.root),
            )
        return path

    def entries(self) -> list[ModelEntry]:
        """Every model with its versions and active version."""
        return [ModelEntry(n, self.versions(n), self.active_version(n)) for n in self.models()]

    def check(self) -> list[str]:
        """Problems found in the store (empty when consistent): every active pointer names an installed
        version whose files match its manifest, and no version directory is half-written."""
        problems: list[str] = []
        for name in self.models():
            for version in self.versions(name):
                try:
                    manifest = verify_bundle(self.root / name / str(version))
                except EdgectlError as exc:
                    problems.append(f"{name}/{version}: {exc}")
                    continue
                if (manifest.name, manifest.version) != (name, version):
                    problems.append(f"{name}/{version} holds bundle {manifest.bundle_dirname}")
            active_file = self.root / name / ACTIVE
            if active_file.exists():
                try:
                    active = self._read_pointer(active_file)
                except StoreError as exc:
                    problems.append(str(exc))
                    continue
                if active not in self.versions(name):
                    problems.append(f"{name}: active version {active} is not installed")
        return problems

    # -- writing (under the store lock) ---------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's writer lock; clears what a killed writer left behind. Raises :class:`StoreError`
        when another writer holds it for longer than ``lock_timeout_s``."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"The model store {self.root} is locked by another edgectl process.",
                            hint="Wait for the other install to finish and try again.",
                        ) from None
                    time.sleep(0.05)
            self._recover()
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def install(self, bundle: Path, *, activate: bool = True) -> Manifest:
        """Unpack ``bundle`` (a tar, or an unpacked bundle directory such as the one the trust client hands over),
        verify it, check its golden outputs with the serving backend, move it into place and (by default) activate
        it. A directory is copied, never moved: the store re-verifies its own copy. Installing a version that is
        already there with identical files only activates it. Returns the manifest.

        Raises:
            BundleError: the bundle is malformed or tampered with.
            GoldenMismatchError / ModelLoadError / MissingDependencyError: this device cannot serve it correctly.
            StoreError: the version is already installed with different content, or the store is locked.
        """
        with self.lock():
            staging = Path(tempfile.mkdtemp(dir=self._staging(), prefix="install-"))
            try:
                unpacked = _copy_in(Path(bundle), staging) if Path(bundle).is_dir() else unpack_bundle(bundle, staging)
                manifest = read_manifest(unpacked)
                check_name(manifest.name)
                final = self.root / manifest.name / str(manifest.version)
                if final.is_dir():
                    self._check_same_bundle(final, manifest)
                else:
                    load_version(unpacked, self.options).close()  # verify + golden check + warm-up run
                    self._move_into_place(unpacked, manifest, activate=activate)
                    log.info("installed %s", manifest.bundle_dirname)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            if activate:
                self._write_active(manifest.name, manifest.version)  # a no-op when _move_into_place set it
            return manifest

    @staticmethod
    def _check_same_bundle(final: Path, manifest: Manifest) -> None:
        if read_manifest(final).dumps() != manifest.dumps():
            raise StoreError(
                f"{manifest.name} version {manifest.version} is already installed with different content; "
                "a version number names one bundle forever.",
                hint="Publish the new build as a higher version.",
            )
        log.info("%s is already installed", manifest.bundle_dirname)

    def activate(self, name: str, version: int) -> None:
        """Make ``version`` the active version of ``name`` (after re-verifying its files)."""
        with self.lock():
            verify_bundle(self.version_path(name, version))
            self._write_active(name, version)

    def rollback(self, name: str) -> int:
        """Re-activate the version that was active before the current one; returns it."""
        with self.lock():
            previous = self._read_pointer(self.root / name / PREVIOUS)
            if previous is None or previous not in self.versions(name):
                raise StoreError(f"Model {name!r} has no previous version to roll back to.")
            verify_bundle(self.version_path(name, previous))
            self._write_active(name, previous)
            return previous

    def remove(self, name: str, version: int | None = None, *, force: bool = False) -> None:
        """Remove one version, or the whole model when ``version`` is None. The active version is only removed
        with ``force`` (then the model has no active version until another is activated)."""
        with self.lock():
            mdir = self.root / name
            if not mdir.is_dir():
                raise StoreError(f"Model {name!r} is not in the store {self.root}.")
            target = mdir if version is None else self.version_path(name, version)
            if version is not None and self.active_version(name) == version:
                if not force:
                    raise StoreError(
                        f"{name} version {version} is active; activate another version first or use --force."
                    )
                (mdir / ACTIVE).unlink()
                fsync_dir(mdir)
            trash = Path(tempfile.mkdtemp(dir=self._staging(), prefix="remove-"))
            os.rename(target, trash / "x")  # the version (or model) disappears in one step
            fsync_dir(target.parent)
            shutil.rmtree(trash, ignore_errors=True)

    # -- internals ------------------------------------------------------------------------------

    def _staging(self) -> Path:
        path = self.root / STAGING
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _recover(self) -> None:
        # Called with the lock held: anything in .staging or a temp pointer file is a dead writer's leftover.
        staging = self.root / STAGING
        if staging.is_dir():
            for entry in staging.iterdir():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        for name in self.models():
            for entry in (self.root / name).iterdir():
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    entry.unlink(missing_ok=True)

    def _move_into_place(self, unpacked: Path, manifest: Manifest, *, activate: bool) -> None:
        mdir = self.root / manifest.name
        if mdir.is_dir():
            os.rename(unpacked, mdir / str(manifest.version))
            fsync_dir(mdir)
            if activate:
                self._write_active(manifest.name, manifest.version)
            return
        # A new model: build <model>/ with its version and pointer in staging, then one rename publishes it all.
        shell = unpacked.parent / "model"
        shell.mkdir()
        os.rename(unpacked, shell / str(manifest.version))
        if activate:
            atomic_write_text(shell / ACTIVE, f"{manifest.version}\n")
        fsync_dir(shell)
        os.rename(shell, mdir)
        fsync_dir(self.root)

    def _write_active(self, name: str, version: int) -> None:
        mdir = self.root / name
        current = self.active_version(name)
        if current == version:
            return
        if current is not None:
            atomic_write_text(mdir / PREVIOUS, f"{current}\n")
        atomic_write_text(mdir / ACTIVE, f"{version}\n")
        log.info("activated %s version %d (was %s)", name, version, current)

    @staticmethod
    def _read_pointer(path: Path) -> int | None:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"Cannot read the pointer {path}: {exc}.") from exc
        if not text.isdigit():
            raise StoreError(f"The pointer {path} holds {text!r}, not a version number.")
        return int(text)


def _copy_in(bundle_dir: Path, staging: Path) -> Path:
    """Copy a verified, unpacked bundle into ``staging`` (only the files its manifest lists; anything else in the
    folder makes :func:`verify_bundle` refuse it first). The copy itself is verified again by ``load_version``
    before it is moved into place, which also covers a source that changed during the copy."""
    manifest = verify_bundle(bundle_dir)
    dest = staging / manifest.bundle_dirname
    dest.mkdir()
    shutil.copy2(bundle_dir / MANIFEST, dest / MANIFEST)
    for entry in manifest.files:
        (dest / entry.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle_dir / entry.path, dest / entry.path)
    return dest


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"digits"`` -> ("digits", None); ``"digits/3"`` or ``"digits:3"`` -> ("digits", 3)."""
    for sep in ("/", ":"):
        if sep in ref:
            name, _, ver = ref.partition(sep)
            if not ver.isdigit():
                raise ManifestError(f"Version in {ref!r} must be a positive integer.")
            return name, int(ver)
    return ref, None


__all__ = ["ModelEntry", "ModelStore", "parse_ref"]
