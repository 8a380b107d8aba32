"""The signed model repository: a TUF repository (python-tuf's Metadata API) whose targets are bundle tars.

Every change publishes in the order targets file -> targets metadata -> snapshot -> timestamp, each written
atomically, and with consistent snapshots (versioned metadata names, hash-prefixed target names). A client that reads
while the operator publishes therefore sees either the old repository or the new one, never a mix.

Root keys may live apart from the online keys (``root_keys_dir``): only initialisation, key rotation and re-signing
root need them, and those operations say so when they are missing.

Public API: :class:`ModelRepository`, :class:`RoleStatus`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from edgectl.errors import InputFileError, OutputExistsError
from edgectl.fsutil import atomic_output, atomic_write_bytes
from edgectl.log import get_logger
from edgectl.trust.delegations import BIN_PREFIX, bin_for, bin_roles, build_delegations, director_keys
from edgectl.trust.keys import generate_key, load_signers, save_key
from edgectl.trust.settings import (
    DIRECTOR,
    TOP_LEVEL_ROLES,
    RepoLayout,
    RepoSettings,
    format_duration,
    utcnow,
)
from edgectl.trust.targetmeta import TargetMeta, inspect_bundle, target_path_for

log = get_logger("edgectl.trust.repository")
Clock = Callable[[], datetime]
_HASH_ALGOS = ["sha256"]


@dataclass(frozen=True)
class RoleStatus:
    """One role as the repository currently publishes it."""

    role: str
    version: int | None
    expires: datetime | None
    threshold: int
    keyids: tuple[str, ...]
    keys_present: int
    warning: str | None


class ModelRepository:
    """Open an existing repository folder (create one with :meth:`create`).

    Args:
        path: the repository folder.
        root_keys_dir: where the root keys are (default ``<path>/keys/root``); needed only to sign root.json.
        clock: returns the current aware UTC time; expiries are computed from it.
    Raises:
        InputFileError: ``path`` is not a repository.
    """

    def __init__(self, path: Path, *, root_keys_dir: Path | None = None, clock: Clock = utcnow) -> None:
        self.layout = RepoLayout(Path(path))
        self.settings = self.layout.load_settings()
        self.root_keys_dir = Path(root_keys_dir) if root_keys_dir else self.layout.default_root_key_dir
        self._clock = clock

    # -- creation ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        settings: RepoSettings | None = None,
        root_keys_dir: Path | None = None,
        clock: Clock = utcnow,
    ) -> ModelRepository:
        """Generate every role's keys and publish version 1 of root, targets, snapshot and timestamp.

        Raises:
            OutputExistsError: ``path`` already holds a repository.
        """
        settings = settings or RepoSettings()
        layout = RepoLayout(Path(path))
        if layout.exists() or (layout.metadata / "root.json").exists():
            raise OutputExistsError(f"{layout.root} already holds a repository; refusing to overwrite its keys.")
        root_dir = Path(root_keys_dir) if root_keys_dir else layout.default_root_key_dir
        pairs = {
            role: [generate_key() for _ in range(settings.role(role).keys)] for role in (*TOP_LEVEL_ROLES, DIRECTOR)
        }
        for role, role_pairs in pairs.items():
            for pair in role_pairs:
                save_key(pair, root_dir if role == "root" else layout.online_key_dir(role))
        root = Root(consistent_snapshot=True)
        for role in TOP_LEVEL_ROLES:
            for pair in pairs[role]:
                root.add_key(pair.public, role)
            root.roles[role].threshold = settings.role(role).threshold
        layout.save_settings(settings)
        repo = cls(layout.root, root_keys_dir=root_dir, clock=clock)
        repo._write_root(Metadata(root), [p.signer for p in pairs["root"]], bump=False)
        targets = Targets()
        targets.delegations = build_delegations(
            director_keys={p.keyid: p.public for p in pairs[DIRECTOR]},
            director_threshold=settings.role(DIRECTOR).threshold,
            bin_keys={p.keyid: p.public for p in pairs["targets"]},
            bin_threshold=settings.role("targets").threshold,
            bins=settings.hash_bins,
        )
        repo._write_targets(Metadata(targets), bump=False)
        for name in repo._bins():
            repo._write_targets(Metadata(Targets()), role=name, bump=False)
        repo._write_snapshot(new=True)
        repo._write_timestamp(new=True)
        log.info("created repository %s", layout.root)
        return repo

    def _bins(self) -> list[str]:
        """The hash-bin role names (empty without hash-bin delegation)."""
        return [name for name, _ in bin_roles(self.settings.hash_bins)] if self.settings.hash_bins else []

    def _role_of(self, target_path: str) -> str:
        """The targets role that signs ``target_path``: its hash bin, or targets itself."""
        return bin_for(target_path, self.settings.hash_bins) if self.settings.hash_bins else "targets"

    def _redelegate(self, targets: Targets, root: Root, director: tuple[dict[str, Key], int] | None = None) -> None:
        """Rebuild the delegations: the given (or current) director keys; bins signed by root's targets keys."""
        director_map, director_threshold = director if director is not None else director_keys(targets)
        entry = root.roles["targets"]
        targets.delegations = build_delegations(
            director_keys=director_map,
            director_threshold=director_threshold,
            bin_keys={k: root.keys[k] for k in entry.keyids},
            bin_threshold=entry.threshold,
            bins=self.settings.hash_bins,
        )

    # -- reading -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The repository's clock (expiries are computed from it)."""
        return self._clock()

    def _read(self, role: str) -> Metadata[Any]:
        path = self.layout.metadata / f"{role}.json"
        if not path.is_file():
            raise InputFileError(f"{path} is missing; the repository is incomplete.")
        return Metadata.from_file(str(path))

    def root(self) -> Root:
        return cast(Root, self._read("root").signed)

    def targets(self) -> Targets:
        """The top-level targets metadata (with hash bins, the bundles are in the bin roles: see target_info)."""
        return cast(Targets, self._read("targets").signed)

    def target_info(self, target_path: str) -> TargetFile | None:
        """The signed info of ``target_path`` (from its hash bin, if bins are used), or None."""
        return cast(Targets, self._read(self._role_of(target_path)).signed).targets.get(target_path)

    def root_bytes(self) -> bytes:
        """The current root.json, as a device is bootstrapped with it."""
        return (self.layout.metadata / "root.json").read_bytes()

    # -- signing and publishing ----------------------------------------------------------------

    def _key_dir(self, role: str) -> Path:
        return self.root_keys_dir if role == "root" else self.layout.online_key_dir(role)

    def _signers(self, role: str, root: Root) -> list[Signer]:
        """The role's signers found on this machine; raises when fewer than its threshold are available."""
        entry = root.roles[role]
        key_dir = self._key_dir(role)
        signers: list[Signer] = list(load_signers(key_dir, root.keys, entry.keyids))
        if len(signers) < entry.threshold:
            hint = (
                "Pass --root-keys-dir with the folder holding the (offline) root keys."
                if role == "root"
                else f"Restore the {role} key files into {key_dir}."
            )
            raise InputFileError(
                f"Signing {role}.json needs {entry.threshold} of its {len(entry.keyids)} keys, but only "
                f"{len(signers)} were found in {key_dir}.",
                hint=hint,
            )
        return signers

    def _preflight(self, *roles: str) -> None:
        """Raise now if any of ``roles`` cannot be signed, so an operation never stops half-published."""
        root = self.root()
        for role in dict.fromkeys(roles):
            self._signers(role, root)

    def _director_signers(self, targets: Targets) -> list[Signer]:
        delegations = targets.delegations
        if delegations is None or delegations.roles is None or DIRECTOR not in delegations.roles:
            raise InputFileError("targets.json delegates no director keys; this repository cannot sign instructions.")
        role = delegations.roles[DIRECTOR]
        key_dir = self.layout.online_key_dir(DIRECTOR)
        signers: list[Signer] = list(load_signers(key_dir, delegations.keys, role.keyids))
        if len(signers) < role.threshold:
            raise InputFileError(
                f"Signing an instruction needs {role.threshold} director keys; found {len(signers)} in {key_dir}."
            )
        return signers

    def _stamp(self, md: Metadata[Any], role: str, *, bump: bool = True) -> None:
        if bump:
            md.signed.version += 1
        spec_role = "targets" if role.startswith(BIN_PREFIX) else role
        md.signed.expires = self._clock() + self.settings.role(spec_role).expiry

    def _sign_bytes(self, md: Metadata[Any], signers: Sequence[Signer]) -> bytes:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        return md.to_bytes()

    def _write_root(self, md: Metadata[Any], signers: Sequence[Signer], *, bump: bool = True) -> None:
        self._stamp(md, "root", bump=bump)
        data = self._sign_bytes(md, signers)
        version = md.signed.version
        atomic_write_bytes(self.layout.metadata / f"{version}.root.json", data)
        atomic_write_bytes(self.layout.metadata / "root.json", data)

    def _write_versioned(self, role: str, md: Metadata[Any], signers: Sequence[Signer], *, bump: bool = True) -> bytes:
        self._stamp(md, role, bump=bump)
        data = self._sign_bytes(md, signers)
        atomic_write_bytes(self.layout.metadata / f"{md.signed.version}.{role}.json", data)
        atomic_write_bytes(self.layout.metadata / f"{role}.json", data)
        return data

    def _write_targets(self, md: Metadata[Any], *, role: str = "targets", bump: bool = True) -> None:
        """Sign and publish targets.json or one hash bin (both are signed by the targets keys)."""
        self._write_versioned(role, md, self._signers("targets", self.root()), bump=bump)

    def _write_snapshot(self, *, new: bool = False, changed: Sequence[str] = ("targets",)) -> None:
        """Re-sign the snapshot with the current version, length and sha256 of each ``changed`` targets role."""
        md: Metadata[Any] = Metadata(Snapshot()) if new else self._read("snapshot")
        for role in ("targets", *self._bins()) if new else changed:
            data = (self.layout.metadata / f"{role}.json").read_bytes()
            version = cast(Targets, Metadata.from_bytes(data).signed).version
            # Length and hashes pin the exact file: a targets file from another snapshot cannot pass.
            md.signed.meta[f"{role}.json"] = MetaFile.from_data(version, data, _HASH_ALGOS)
        self._write_versioned("snapshot", md, self._signers("snapshot", self.root()), bump=not new)

    def _write_timestamp(self, *, new: bool = False) -> None:
        md: Metadata[Any] = Metadata(Timestamp()) if new else self._read("timestamp")
        snapshot_bytes = (self.layout.metadata / "snapshot.json").read_bytes()
        snapshot_version = cast(Snapshot, Metadata.from_bytes(snapshot_bytes).signed).version
        md.signed.snapshot_meta = MetaFile.from_data(snapshot_version, snapshot_bytes, _HASH_ALGOS)
        self._stamp(md, "timestamp", bump=not new)
        data = self._sign_bytes(md, self._signers("timestamp", self.root()))
        atomic_write_bytes(self.layout.metadata / "timestamp.json", data)

    # -- targets -------------------------------------------------------------------------------

    def add_target(self, tar_path: Path, *, allow_rollback: bool = False) -> tuple[str, TargetFile]:
        """Verify a bundle tar, publish it and sign it as a target. Returns (target path, signed TargetFile).

        Adding the same bytes again is a no-op. Raises :class:`OutputExistsError` if that model version is already
        signed with different bytes (bump the version instead), and the bundle errors for a corrupt bundle.
        """
        tar_path = Path(tar_path)
        self._preflight("targets", "snapshot", "timestamp")
        manifest, manifest_sha256 = inspect_bundle(tar_path)
        target_path = target_path_for(manifest)
        info = TargetFile.from_file(target_path, str(tar_path), _HASH_ALGOS)
        info.unrecognized_fields["custom"] = TargetMeta.from_manifest(
            manifest, manifest_sha256, allow_rollback=allow_rollback
        ).to_custom()
        role = self._role_of(target_path)
        md = self._read(role)
        existing = md.signed.targets.get(target_path)
        if existing is not None:
            if existing.hashes != info.hashes:
                raise OutputExistsError(
                    f"{manifest.bundle_dirname} is already signed with different content.",
                    hint="Give the new bundle a higher version; a signed version never changes.",
                )
            if existing == info:
                return target_path, existing
        self._publish_target_file(tar_path, target_path, info)
        md.signed.targets[target_path] = info
        self._write_targets(md, role=role)
        self._write_snapshot(changed=[role])
        self._write_timestamp()
        log.info("signed target %s", target_path)
        return target_path, info

    def add_targets_bulk(self, items: Sequence[tuple[str, TargetFile, Path]]) -> None:
        """Sign many already-described targets in one targets version (used to grow large repositories)."""
        self._preflight("targets", "snapshot", "timestamp")
        by_role: dict[str, Metadata[Any]] = {}
        for target_path, info, src in items:
            role = self._role_of(target_path)
            if role not in by_role:
                by_role[role] = self._read(role)
            self._publish_target_file(src, target_path, info)
            by_role[role].signed.targets[target_path] = info
        for role, md in by_role.items():
            self._write_targets(md, role=role)
        self._write_snapshot(changed=list(by_role))
        self._write_timestamp()

    def _publish_target_file(self, src: Path, target_path: str, info: TargetFile) -> None:
        dirname, _, basename = target_path.rpartition("/")
        dest = self.layout.targets / dirname / f"{info.hashes['sha256']}.{basename}"
        if dest.is_file():
            return
        with atomic_output(dest) as tmp:
            shutil.copyfile(src, tmp)

    # -- upkeep --------------------------------------------------------------------------------

    def refresh(self, *, within: timedelta | None = None, force: bool = False) -> list[str]:
        """Re-sign roles that expire within ``within`` (default: half of each role's lifetime).

        Targets, snapshot and timestamp use online keys; root is re-signed too when it is due and its keys are at
        hand (otherwise it is left for ``edgectl repo status`` to warn about). Returns the roles re-signed.
        """
        now = self._clock()
        due: list[str] = []
        for role in ("root", "targets", "snapshot", "timestamp"):
            expires = self._read(role).signed.expires
            window = within if within is not None else self.settings.role(role).expiry / 2
            if (force and role != "root") or expires - now <= window:
                due.append(role)
        bin_window = within if within is not None else self.settings.role("targets").expiry / 2
        bins_due = [name for name in self._bins() if force or self._read(name).signed.expires - now <= bin_window]
        # Load every online signer first: a missing or insecure key must fail before anything is written.
        self._preflight(*(r for r in due if r != "root"), *(("targets",) if bins_due else ()))
        if due or bins_due:
            self._preflight("snapshot", "timestamp")
        done: list[str] = []
        if "root" in due:
            root_md = self._read("root")
            try:
                signers = self._signers("root", root_md.signed)
            except InputFileError:
                log.warning("root.json is due for re-signing but the root keys are not here")
            else:
                self._write_root(root_md, signers)
                done.append("root")
        changed = (["targets"] if "targets" in due else []) + bins_due
        for role in changed:
            self._write_targets(self._read(role), role=role)
        done += ["targets"] if "targets" in due else []
        done += [f"{len(bins_due)} hash bins"] if bins_due else []
        if changed or "snapshot" in due:
            self._write_snapshot(changed=changed)
            done.append("snapshot")
        if "snapshot" in done or "timestamp" in due:
            self._write_timestamp()
            done.append("timestamp")
        return done

    def rotate(self, role: str) -> list[str]:
        """Replace every key of ``role`` with fresh ones; return the new keyids.

        Top-level roles: the new root.json lists the new keys and is signed by the old root threshold (and, for
        root itself, the new one too), so devices follow the chain; the role's metadata is then re-signed with the
        new keys. Director: targets.json delegates to the new keys. Old private key files are deleted afterwards.
        """
        spec = self.settings.role(role)
        if role == DIRECTOR:
            return self._rotate_director()
        root_md = self._read("root")
        root = cast(Root, root_md.signed)
        old_root_signers = self._signers("root", root)  # fail before generating anything
        # The roles re-signed below with keys that do not change must be signable (a lost key is what rotation
        # replaces, so the rotated role itself is not checked).
        self._preflight(*{"targets": ("snapshot", "timestamp"), "snapshot": ("timestamp",)}.get(role, ()))
        new_pairs = [generate_key() for _ in range(spec.keys)]
        key_dir = self._key_dir(role)
        for pair in new_pairs:
            save_key(pair, key_dir)
        old_ids = list(root.roles[role].keyids)
        for keyid in old_ids:
            root.revoke_key(keyid, role)
        for pair in new_pairs:
            root.add_key(pair.public, role)
        root.roles[role].threshold = spec.threshold
        signers = old_root_signers + ([p.signer for p in new_pairs] if role == "root" else [])
        self._write_root(root_md, signers)
        if role == "targets":
            md = self._read("targets")
            self._redelegate(md.signed, root)  # the bins are signed by the targets keys: point them at the new ones
            self._write_targets(md)
            for name in self._bins():
                self._write_targets(self._read(name), role=name)
            self._write_snapshot(changed=["targets", *self._bins()])
        if role == "snapshot":
            self._write_snapshot(changed=[])
        if role != "root":
            self._write_timestamp()
        for keyid in old_ids:
            (key_dir / f"{keyid}.pem").unlink(missing_ok=True)
        log.info("rotated %s keys", role)
        return [p.keyid for p in new_pairs]

    def _rotate_director(self) -> list[str]:
        md = self._read("targets")
        targets = cast(Targets, md.signed)
        # The old director keys are not needed (they may be the lost or stolen ones); targets signs the change.
        old_ids = list(director_keys(targets)[0])
        self._preflight("targets", "snapshot", "timestamp")
        new_pairs = [generate_key() for _ in range(self.settings.role(DIRECTOR).keys)]
        key_dir = self.layout.online_key_dir(DIRECTOR)
        for pair in new_pairs:
            save_key(pair, key_dir)
        threshold = self.settings.role(DIRECTOR).threshold
        self._redelegate(targets, self.root(), director=({p.keyid: p.public for p in new_pairs}, threshold))
        self._write_targets(md)
        self._write_snapshot()
        self._write_timestamp()
        for keyid in old_ids:
            (key_dir / f"{keyid}.pem").unlink(missing_ok=True)
        return [p.keyid for p in new_pairs]

    def status(self, *, warn_within: timedelta | None = None) -> list[RoleStatus]:
        """Each role's version, expiry, threshold and keys; ``warning`` is set when it expires within the window
        (default: a quarter of the role's lifetime) or when fewer than its threshold of keys are on this machine."""
        now = self._clock()
        root = self.root()
        rows: list[RoleStatus] = []
        for role in TOP_LEVEL_ROLES:
            signed = self._read(role).signed
            entry = root.roles[role]
            present = sum((self._key_dir(role) / f"{k}.pem").is_file() for k in entry.keyids)
            window = warn_within if warn_within is not None else self.settings.role(role).expiry / 4
            left = signed.expires - now
            warning = None
            if left <= timedelta(0):
                warning = f"EXPIRED {format_duration(-left)} ago: devices refuse it; run edgectl repo refresh"
            elif left <= window:
                fix = "keys rotate/refresh with --root-keys-dir" if role == "root" else "repo refresh"
                warning = f"expires in {format_duration(left)}; run edgectl {fix}"
            elif present < entry.threshold and role != "root":
                warning = f"only {present} of {entry.threshold} keys on this machine"
            rows.append(
                RoleStatus(role, signed.version, signed.expires, entry.threshold, tuple(entry.keyids), present, warning)
            )
        targets = self.targets()
        delegations = targets.delegations
        if delegations is not None and delegations.roles is not None and DIRECTOR in delegations.roles:
            role_entry = delegations.roles[DIRECTOR]
            key_dir = self.layout.online_key_dir(DIRECTOR)
            present = sum((key_dir / f"{k}.pem").is_file() for k in role_entry.keyids)
            rows.append(RoleStatus(DIRECTOR, None, None, role_entry.threshold, tuple(role_entry.keyids), present, None))
        bins = self._bins()
        if bins:
            soonest = min(self._read(name).signed.expires for name in bins)
            left = soonest - now
            window = warn_within if warn_within is not None else self.settings.role("targets").expiry / 4
            warning = None
            if left <= window:
                warning = f"a bin expires in {format_duration(left)}; run edgectl repo refresh"
            entry = root.roles["targets"]
            rows.append(
                RoleStatus(f"{len(bins)} hash bins", None, soonest, entry.threshold, tuple(entry.keyids), 0, warning)
            )
        return rows

    def target_count(self) -> int:
        roles = self._bins() or ["targets"]
        return sum(len(cast(Targets, self._read(role).signed).targets) for role in roles)

    def director_signers(self) -> list[Signer]:
        """The director's signers (online keys), for :func:`edgectl.trust.director.sign_instruction`."""
        return self._director_signers(self.targets())
