"""The device side: python-tuf's ``ngclient.Updater`` plus edgectl's own rules, returning a verified bundle.

:meth:`ModelUpdater.update` reads top-down::

    refresh()                     python-tuf: root chain, timestamp, snapshot, targets (signatures, versions, expiry)
    verify the instruction        director signature, device id, expiry, sequence        (optional)
    choose the target             signed? same hash as the instruction? compatible? newer?
    download + verify             python-tuf checks length and hashes, under a byte cap and a deadline
    unpack + verify the bundle    edgectl.bundle, in a private staging folder; manifest must match the signed info
    hand over                     one rename into ``dest_parent``; record the instruction sequence

Nothing reaches ``dest_parent`` and no state advances unless every step passed. python-tuf keeps its trusted
metadata in ``<device_dir>/metadata`` (written atomically); edgectl's record (installed versions, last sequence) is
``<device_dir>/trust-state.json``. Every python-tuf error is re-raised as the edgectl error naming the attack.

Public API: :class:`ClientConfig`, :class:`VerifiedBundle`, :class:`ModelUpdater`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from edgectl.bundle import MANIFEST, Manifest, read_manifest, unpack_bundle
from edgectl.errors import (
    ConfigError,
    EdgectlError,
    IncompatibleTarget,
    OutputExistsError,
    RollbackAttack,
    UnsignedTarget,
    WrongTarget,
)
from edgectl.fsutil import fsync_dir, sha256_file
from edgectl.log import get_logger
from edgectl.trust.director import DesiredState, verify_instruction
from edgectl.trust.errormap import map_metadata_error, map_target_error
from edgectl.trust.fetchers import METADATA_URL, TARGETS_URL, GuardedFetcher
from edgectl.trust.settings import DIRECTOR, utcnow
from edgectl.trust.state import StateFile, TrustState
from edgectl.trust.targetmeta import DeviceCapabilities, TargetMeta

log = get_logger("edgectl.trust.client")


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Limits of the device's update client (DESIGN: every download a size cap, every wait a timeout)."""

    max_root_bytes: int = 512 * 1024
    max_timestamp_bytes: int = 16 * 1024
    max_snapshot_bytes: int = 2 * 1024 * 1024
    #: targets.json grows ~330 bytes per bundle: 16 MiB holds ~50,000 targets.
    max_targets_bytes: int = 16 * 1024 * 1024
    max_bundle_bytes: int = 2 * 1024**3
    #: The most seconds one file download may take, however slowly the bytes arrive.
    download_timeout_s: float = 600.0
    max_root_rotations: int = 32

    def updater_config(self) -> UpdaterConfig:
        return UpdaterConfig(
            max_root_rotations=self.max_root_rotations,
            root_max_length=self.max_root_bytes,
            timestamp_max_length=self.max_timestamp_bytes,
            snapshot_max_length=self.max_snapshot_bytes,
            targets_max_length=self.max_targets_bytes,
        )

    @property
    def max_metadata_bytes(self) -> int:
        return max(self.max_root_bytes, self.max_timestamp_bytes, self.max_snapshot_bytes, self.max_targets_bytes)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed every check, unpacked at ``path`` (``dest_parent/<model>-<version>``)."""

    path: Path
    manifest: Manifest
    target_path: str
    meta: TargetMeta
    instruction: DesiredState | None


class ModelUpdater:
    """The device's update client for one device folder.

    Args:
        device_dir: private folder for trusted metadata, the trust state and staging (same file system as the model
            store, so the final hand-over is one rename).
        fetcher: the transport (any :class:`tuf.ngclient.FetcherInterface`).
        device_id: this device's id (instructions for other ids are refused).
        capabilities: what this device can run.
        config: limits.
        bootstrap_root: the root.json the device was enrolled with; needed only until the first refresh.
        clock: current aware UTC time (expiry checks of metadata and instructions).
        monotonic: clock for download deadlines.
    Raises:
        ConfigError: no trusted root yet and no ``bootstrap_root`` given.
    """

    def __init__(
        self,
        device_dir: Path,
        fetcher: FetcherInterface,
        *,
        device_id: str,
        capabilities: DeviceCapabilities | None = None,
        config: ClientConfig | None = None,
        bootstrap_root: bytes | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_dir = Path(device_dir)
        self.metadata_dir = self.device_dir / "metadata"
        self.staging_root = self.device_dir / "staging"
        self.device_id = device_id
        self.capabilities = capabilities or DeviceCapabilities()
        self.config = config or ClientConfig()
        self.state_file = StateFile(self.device_dir / "trust-state.json")
        self._clock = clock
        self._fetcher = GuardedFetcher(
            fetcher,
            max_metadata_bytes=self.config.max_metadata_bytes,
            max_target_bytes=self.config.max_bundle_bytes,
            timeout_s=self.config.download_timeout_s,
            monotonic=monotonic,
        )
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        if not (self.metadata_dir / "root.json").exists() and bootstrap_root is None:
            raise ConfigError(
                f"Device folder {self.device_dir} has no trusted root.json yet.",
                hint="Enrol the device with the repository's root.json (e.g. metadata/1.root.json).",
            )
        # python-tuf needs the enrolment root only until it has cached one; after that the cache is the anchor.
        self._bootstrap: bytes | None = None if (self.metadata_dir / "root.json").exists() else bootstrap_root
        self._updater: Updater | None = None

    # -- metadata ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Update trusted metadata from the repository (python-tuf's top-level client workflow).

        Raises the attack-named :class:`~edgectl.errors.TrustError` subclasses (see errormap.py), or
        :class:`~edgectl.errors.TransientError` when the repository cannot be reached.
        """
        try:
            updater = Updater(
                str(self.metadata_dir),
                METADATA_URL,
                target_dir=None,
                target_base_url=TARGETS_URL,
                fetcher=self._fetcher,
                config=self.config.updater_config(),
                bootstrap=self._bootstrap,
            )
            _pin_reference_time(updater, self._clock())
            updater.refresh()
        except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
            raise map_metadata_error(exc) from exc
        self._bootstrap = None
        self._updater = updater

    def trusted_targets(self) -> Targets:
        """The top-level targets metadata python-tuf verified and persisted in the last refresh."""
        md = Metadata.from_file(str(self.metadata_dir / "targets.json"))
        return cast(Targets, md.signed)

    def trusted_root_version(self) -> int:
        return int(Metadata.from_file(str(self.metadata_dir / "root.json")).signed.version)

    def target_info(self, target_path: str) -> TargetFile:
        """The verified length, hashes and custom info of ``target_path`` (after :meth:`refresh`).

        Use it to check a file obtained another way (a resumed chunked download, a USB copy) with
        ``info.verify_length_and_hashes(fh)``. Raises :class:`UnsignedTarget` when the repository did not sign it.
        """
        try:
            info = self._require_updater().get_targetinfo(target_path)
        except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
            raise map_metadata_error(exc) from exc
        if info is None:
            raise UnsignedTarget(
                f"Target {target_path} is not signed by the repository; refusing to download it.",
                hint="Sign the bundle with: edgectl repo add <repo> <bundle.tar>",
            )
        return info

    def latest_target(self, model: str) -> str | None:
        """The signed target path of ``model``'s highest version (after :meth:`refresh`), or None.

        Raises :class:`ConfigError` for a repository with hash-bin delegation: its bundles are spread over bins that
        the device fetches only by target path, so ask for a path (or follow a director instruction) instead.
        """
        targets = self.trusted_targets()
        delegations = targets.delegations
        if delegations is not None and delegations.roles is not None and set(delegations.roles) - {DIRECTOR}:
            raise ConfigError(
                "This repository spreads its targets over hash bins; the device looks bundles up by target path.",
                hint="Pass the target path, or follow the director's instruction.",
            )
        best: tuple[int, str] | None = None
        for path, info in targets.targets.items():
            with contextlib.suppress(UnsignedTarget):
                meta = TargetMeta.from_custom(info.custom, target_path=path)
                if meta.model == model and (best is None or meta.version > best[0]):
                    best = (meta.version, path)
        return None if best is None else best[1]

    # -- the update ----------------------------------------------------------------------------

    def update(
        self, dest_parent: Path, *, instruction: bytes | None = None, target_path: str | None = None
    ) -> VerifiedBundle:
        """Refresh, verify, download and unpack one bundle into ``dest_parent/<model>-<version>``.

        Give either a signed director ``instruction`` (the target it names is used) or a ``target_path``.
        Raises the attack-named errors; on any error nothing is left in ``dest_parent`` and no state advances.
        """
        if (instruction is None) == (target_path is None):
            raise ConfigError("Give exactly one of a director instruction or a target path.")
        self.refresh()
        state = self.state_file.load()
        desired: DesiredState | None = None
        if instruction is not None:
            desired = verify_instruction(
                instruction,
                targets=self.trusted_targets(),
                device_id=self.device_id,
                last_sequence=state.director_sequence,
                now=self._clock(),
            )
        path = desired.target_path if desired is not None else cast(str, target_path)
        updater = self._require_updater()
        info, meta = self._choose(path, desired, state)
        result = self._download_and_unpack(updater, info, meta, Path(dest_parent), desired)
        if desired is not None:
            state.director_sequence = desired.sequence
            state.last_deployment = desired.deployment_id
            self.state_file.save(state)
        return result

    def mark_installed(self, bundle: VerifiedBundle) -> None:
        """Record that ``bundle`` was installed: later updates of that model must carry a higher version."""
        state = self.state_file.load()
        state.installed[bundle.meta.model] = bundle.meta.version
        self.state_file.save(state)

    def installed_version(self, model: str) -> int | None:
        return self.state_file.load().installed.get(model)

    def _require_updater(self) -> Updater:
        if self._updater is None:
            raise ConfigError("refresh() must run before a target is chosen.")
        return self._updater

    def _choose(
        self, target_path: str, desired: DesiredState | None, state: TrustState
    ) -> tuple[TargetFile, TargetMeta]:
        info = self.target_info(target_path)
        meta = TargetMeta.from_custom(info.custom, target_path=target_path)
        if desired is not None:
            if info.length != desired.target_length or info.hashes.get("sha256") != desired.target_sha256:
                raise WrongTarget(
                    f"The instruction names {target_path} with sha256 {desired.target_sha256[:16]}…, but the "
                    f"repository signed {str(info.hashes.get('sha256'))[:16]}…; refusing it.",
                )
            if (desired.model, desired.version) != (meta.model, meta.version):
                raise WrongTarget(
                    f"The instruction asks for {desired.model} v{desired.version} but {target_path} is signed as "
                    f"{meta.model} v{meta.version}."
                )
        self.capabilities.check(meta, target_path=target_path)
        if info.length > self.config.max_bundle_bytes:
            raise IncompatibleTarget(
                f"Target {target_path} is {info.length} bytes; this device accepts at most "
                f"{self.config.max_bundle_bytes}."
            )
        installed = state.installed.get(meta.model, 0)
        rollback_ok = meta.allow_rollback or (desired is not None and desired.allow_rollback)
        if meta.version <= installed and not rollback_ok:
            raise RollbackAttack(
                f"{meta.model} v{meta.version} is not newer than the installed v{installed}; refusing a rollback.",
                hint="To go back on purpose, sign the old bundle with --allow-rollback or set allow_rollback in the "
                "director instruction.",
            )
        return info, meta

    def _download_and_unpack(
        self, updater: Updater, info: TargetFile, meta: TargetMeta, dest_parent: Path, desired: DesiredState | None
    ) -> VerifiedBundle:
        final = dest_parent / f"{meta.model}-{meta.version}"
        if final.exists():
            raise OutputExistsError(f"{final} already exists; remove it or install elsewhere.")
        with self._staging() as work:
            tar_path = work / "bundle.tar"
            try:
                updater.download_target(info, str(tar_path))
            except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
                raise map_target_error(exc, info.path) from exc
            bundle_dir = unpack_bundle(tar_path, work / "unpacked", max_bytes=self.config.max_bundle_bytes)
            tar_path.unlink()
            manifest = read_manifest(bundle_dir)
            digest, _ = sha256_file(bundle_dir / MANIFEST)
            if (manifest.name, manifest.version, digest) != (meta.model, meta.version, meta.manifest_sha256):
                raise WrongTarget(
                    f"Bundle {info.path} holds {manifest.name} v{manifest.version} whose manifest does not match the "
                    "signed target info; refusing it."
                )
            dest_parent.mkdir(parents=True, exist_ok=True)
            _move_into(bundle_dir, final)
        log.info("verified %s v%d into %s", meta.model, meta.version, final)
        return VerifiedBundle(path=final, manifest=manifest, target_path=info.path, meta=meta, instruction=desired)

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        self.staging_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=self.staging_root, prefix="update-"))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _move_into(src: Path, final: Path) -> None:
    """Move a verified bundle folder to ``final`` in one step (a copy first when crossing file systems)."""
    try:
        os.rename(src, final)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: different file systems
            raise
        tmp = final.with_name(f".{final.name}.partial")
        shutil.copytree(src, tmp)
        os.rename(tmp, final)
    fsync_dir(final.parent)


def _pin_reference_time(updater: Updater, now: datetime) -> None:
    """Make python-tuf judge expiry at ``now`` (our injectable clock) instead of reading the system clock.

    python-tuf fixes its reference time when the Updater is created and offers no parameter for it; this sets that
    one attribute, and fails loudly if a future python-tuf renames it rather than silently using another clock.
    """
    trusted = getattr(updater, "_trusted_set", None)
    if trusted is None or not hasattr(trusted, "reference_time"):
        raise EdgectlError("This python-tuf version does not expose its reference time; pin tuf to 5.x-7.x.")
    trusted.reference_time = now
