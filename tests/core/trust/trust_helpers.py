"""Helpers for the trust tests: tiny real bundles, a real repository on disk, a device with an injectable clock.

The attacker is played by editing a :class:`MemoryFetcher`'s files (what the network / broker serves); the honest
repository stays on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

from edgectl.bundle import Artifact, Manifest, TensorSpec, pack_bundle, save_golden, write_manifest
from edgectl.trust import (
    DesiredState,
    DeviceCapabilities,
    MemoryFetcher,
    ModelRepository,
    ModelUpdater,
    sign_instruction,
)
from edgectl.trust.keys import load_signer

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    """A settable UTC clock shared by the repository and the device."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def make_bundle_tar(
    root: Path,
    name: str = "digits",
    version: int = 1,
    *,
    payload: bytes | None = None,
    formats: tuple[str, ...] = ("onnx",),
    profile: str | None = None,
) -> Path:
    """Build a tiny valid bundle with edgectl.bundle and pack it; returns the tar path."""
    d = root / "src" / f"{name}-{version}"
    d.mkdir(parents=True)
    artifacts = []
    for fmt in formats:
        fname = f"model.{fmt}"
        (d / fname).write_bytes(payload if payload is not None else f"{name} v{version} {fmt} weights".encode())
        artifacts.append(Artifact(path=fname, format=fmt, precision="fp32"))
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    save_golden(d / "golden.npz", {"x": x}, {a.path: {"y": x * 2} for a in artifacts})
    manifest = Manifest(
        name=name,
        version=version,
        inputs=[TensorSpec("x", "float32", (-1, 4))],
        outputs=[TensorSpec("y", "float32", (-1, 4))],
        artifacts=artifacts,
        target={"name": profile} if profile else {},
    )
    write_manifest(d, manifest)
    out = root / "tars"
    out.mkdir(exist_ok=True)
    return pack_bundle(d, out / f"{name}-{version}.tar")


@dataclass
class World:
    """A repository, the network between it and one device, and the device."""

    tmp: Path
    clock: Clock
    repo: ModelRepository
    net: MemoryFetcher
    store: Path
    device_dir: Path
    _bundles: int = field(default=0)

    def bundle(self, name: str = "digits", version: int = 1, **kw: object) -> Path:
        self._bundles += 1
        return make_bundle_tar(self.tmp / f"b{self._bundles}", name, version, **kw)  # type: ignore[arg-type]

    def publish(self, name: str = "digits", version: int = 1, **kw: object) -> str:
        """Sign a new bundle and let the honest network serve the repository's current files."""
        allow_rollback = bool(kw.pop("allow_rollback", False))
        path, _ = self.repo.add_target(self.bundle(name, version, **kw), allow_rollback=allow_rollback)
        self.net.sync_from_dir(self.repo.layout.root)
        return path

    def sync(self) -> None:
        self.net.sync_from_dir(self.repo.layout.root)

    def device(self, *, device_id: str = "dev-1", **kw: object) -> ModelUpdater:
        return ModelUpdater(
            self.device_dir,
            self.net,
            device_id=device_id,
            bootstrap_root=(self.repo.layout.metadata / "1.root.json").read_bytes(),
            clock=self.clock,
            capabilities=kw.pop("capabilities", DeviceCapabilities()),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )

    def instruct(
        self,
        target_path: str,
        *,
        sequence: int,
        device_id: str = "dev-1",
        expires_in: timedelta = timedelta(days=1),
        signers: list[Signer] | None = None,
        allow_rollback: bool = False,
    ) -> bytes:
        """A director instruction for a target the repository signed (signed with the director keys by default)."""
        info = self.repo.target_info(target_path)
        assert info is not None, target_path
        custom = info.custom["edgectl"]
        state = DesiredState(
            device_id=device_id,
            deployment_id=f"dep-{sequence}",
            model=custom["model"],
            version=custom["version"],
            target_path=target_path,
            target_sha256=info.hashes["sha256"],
            target_length=info.length,
            sequence=sequence,
            expires=self.clock() + expires_in,
            allow_rollback=allow_rollback,
        )
        return sign_instruction(state, signers if signers is not None else self.repo.director_signers())

    def stolen_signer(self, role: str) -> Signer:
        """An attacker's copy of the current (first) key of a top-level role."""
        root = self.repo.root()
        keyid = root.roles[role].keyids[0]
        key_dir = self.repo.root_keys_dir if role == "root" else self.repo.layout.online_key_dir(role)
        return load_signer(key_dir / f"{keyid}.pem", root.keys[keyid])

    def forge(
        self,
        *,
        targets_signer: Signer,
        snapshot_signer: Signer,
        timestamp_signer: Signer,
        evil_tar: Path,
        evil_path: str = "digits/digits-99.tar",
    ) -> None:
        """Serve a next repository version with an extra target, signed with the given (stolen or foreign) keys."""
        meta = self.repo.layout.metadata
        targets: Metadata[Targets] = Metadata.from_bytes((meta / "targets.json").read_bytes())
        info = TargetFile.from_file(evil_path, str(evil_tar), ["sha256"])
        info.unrecognized_fields["custom"] = {
            "edgectl": {"model": "digits", "version": 99, "manifest_sha256": "0" * 64, "formats": ["onnx"]}
        }
        targets.signed.targets[evil_path] = info
        targets.signed.version += 1
        targets.sign(targets_signer)
        t_bytes = targets.to_bytes()
        snapshot: Metadata[Snapshot] = Metadata.from_bytes((meta / "snapshot.json").read_bytes())
        snapshot.signed.meta["targets.json"] = MetaFile.from_data(targets.signed.version, t_bytes, ["sha256"])
        snapshot.signed.version += 1
        snapshot.sign(snapshot_signer)
        s_bytes = snapshot.to_bytes()
        timestamp: Metadata[Timestamp] = Metadata.from_bytes((meta / "timestamp.json").read_bytes())
        timestamp.signed.snapshot_meta = MetaFile.from_data(snapshot.signed.version, s_bytes, ["sha256"])
        timestamp.signed.version += 1
        timestamp.sign(timestamp_signer)
        self.net.files[f"metadata/{targets.signed.version}.targets.json"] = t_bytes
        self.net.files[f"metadata/{snapshot.signed.version}.snapshot.json"] = s_bytes
        self.net.files["metadata/timestamp.json"] = timestamp.to_bytes()
        dirname, _, base = evil_path.rpartition("/")
        self.net.files[f"targets/{dirname}/{info.hashes['sha256']}.{base}"] = evil_tar.read_bytes()

    def served_target(self, target_path: str) -> str:
        """The network path of a signed target's (hash-prefixed) file."""
        info = self.repo.target_info(target_path)
        assert info is not None, target_path
        dirname, _, base = target_path.rpartition("/")
        return f"targets/{dirname}/{info.hashes['sha256']}.{base}"

    def snapshot_device(self) -> dict[str, bytes]:
        """Every file of the device's trusted state and its store: compared before/after an attack."""
        files = {}
        for base in (self.device_dir, self.store):
            for p in sorted(base.rglob("*")):
                if p.is_file() and "staging" not in p.parts:
                    files[str(p)] = p.read_bytes()
                elif p.is_dir() and "staging" not in p.parts:
                    files[str(p)] = b"<dir>"
        return files
