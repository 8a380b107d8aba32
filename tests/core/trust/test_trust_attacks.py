"""One test per attack of the TUF / Uptane threat model. Each asserts the error that names the attack *and* that
nothing was installed: the model store, the trust state and (where the attack is in metadata) python-tuf's trusted
metadata are byte-for-byte unchanged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from trust_helpers import World, make_bundle_tar
from tuf.api.metadata import Metadata

from edgectl.errors import (
    BadSignature,
    EndlessDataAttack,
    FreezeAttack,
    MixAndMatchAttack,
    RollbackAttack,
    SlowRetrievalAttack,
    TamperedTarget,
    UnsignedTarget,
)
from edgectl.trust import ClientConfig, ModelRepository, ModelUpdater, RepoSettings


def _installed(world: World, version: int = 1) -> ModelUpdater:
    """Publish digits v<version>, let the device install it, and return the device."""
    path = world.publish("digits", version)
    device = world.device()
    device.mark_installed(device.update(world.store, target_path=path))
    return device


def test_arbitrary_unsigned_bundle_is_rejected(world: World) -> None:
    device = _installed(world)
    evil = make_bundle_tar(world.tmp / "evil", "digits", 2, payload=b"backdoored weights")
    world.net.files["targets/digits/digits-2.tar"] = evil.read_bytes()
    before = world.snapshot_device()
    with pytest.raises(UnsignedTarget, match="not signed by the repository"):
        device.update(world.store, target_path="digits/digits-2.tar")
    assert world.snapshot_device() == before
    assert not any(r.startswith("targets/") and "digits-2" in r for r in world.net.requests)


def test_bundle_signed_by_a_foreign_repository_is_rejected(world: World, tmp_path: Path) -> None:
    device = _installed(world)
    # The attacker runs a complete repository of their own and serves its metadata to our device.
    attacker = ModelRepository.create(tmp_path / "attacker-repo", clock=world.clock)
    attacker.add_target(make_bundle_tar(tmp_path / "evil", "digits", 2, payload=b"evil"))
    world.net.files.update({k: v for k, v in world.net.from_dir(attacker.layout.root).files.items() if "root" not in k})
    before = world.snapshot_device()
    with pytest.raises(BadSignature, match="threshold of trusted keys"):
        device.update(world.store, target_path="digits/digits-2.tar")
    assert world.snapshot_device() == before


def test_tampered_bundle_bytes_are_rejected(world: World) -> None:
    device = _installed(world)
    path = world.publish("digits", 2)
    device.refresh()  # the device already trusts the new metadata; only the bundle bytes are attacked
    served = world.served_target(path)
    data = bytearray(world.net.files[served])
    data[len(data) // 2] ^= 0xFF  # same length, different content
    world.net.files[served] = bytes(data)
    before = world.snapshot_device()
    with pytest.raises(TamperedTarget, match="does not match its signed length and sha256"):
        device.update(world.store, target_path=path)
    assert world.snapshot_device() == before
    assert device.installed_version("digits") == 1


def test_endless_data_target_longer_than_signed_is_rejected(world: World) -> None:
    device = _installed(world)
    path = world.publish("digits", 2)
    device.refresh()
    served = world.served_target(path)
    world.net.files[served] += b"\0" * (8 << 20)  # keeps streaming past the signed length
    before = world.snapshot_device()
    with pytest.raises(EndlessDataAttack, match="longer than its signed length"):
        device.update(world.store, target_path=path)
    assert world.snapshot_device() == before


def test_endless_data_in_metadata_is_capped(world: World) -> None:
    device = _installed(world)
    world.net.files["metadata/timestamp.json"] += b" " * (64 * 1024)  # over the 16 KiB timestamp cap
    before = world.snapshot_device()
    with pytest.raises(EndlessDataAttack):
        device.update(world.store, target_path="digits/digits-1.tar")
    assert world.snapshot_device() == before


def test_rollback_of_metadata_is_rejected(world: World) -> None:
    device = _installed(world)
    old_timestamp = world.net.files["metadata/timestamp.json"]
    path = world.publish("digits", 2)
    device.refresh()  # trusts the newer timestamp now
    world.net.files["metadata/timestamp.json"] = old_timestamp  # the attacker replays the older one
    before = world.snapshot_device()
    with pytest.raises(RollbackAttack, match="older than what this device already trusts"):
        device.update(world.store, target_path=path)
    assert world.snapshot_device() == before


def test_rollback_of_model_version_is_rejected(world: World) -> None:
    old_path = world.publish("digits", 1)
    device = _installed(world, version=2)
    before = world.snapshot_device()
    with pytest.raises(RollbackAttack, match="not newer than the installed v2"):
        device.update(world.store, target_path=old_path)
    assert world.snapshot_device() == before
    assert not any("digits-1" in r for r in world.net.requests if r.startswith("targets/"))


def test_operator_signed_rollback_is_accepted(world: World) -> None:
    device = _installed(world, version=2)
    path = world.publish("digits", 1, allow_rollback=True)
    result = device.update(world.store, target_path=path)
    assert result.meta.version == 1 and (world.store / "digits-1" / "manifest.json").is_file()


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "targets"])
def test_indefinite_freeze_expired_metadata_is_rejected(make_world: object, role: str) -> None:
    expiries = {r: timedelta(days=30) for r in ("targets", "snapshot", "timestamp")}
    expiries[role] = timedelta(days=1)
    world: World = make_world(RepoSettings().with_expiries(expiries))  # type: ignore[operator]
    device = _installed(world)
    world.repo.add_target(world.bundle("digits", 2))  # the operator moves on; the attacker keeps serving old files
    world.clock.advance(timedelta(days=2))
    before = world.snapshot_device()
    with pytest.raises(FreezeAttack, match="expired"):
        device.update(world.store, target_path="digits/digits-1.tar")
    assert world.snapshot_device() == before


def test_mix_and_match_targets_from_another_snapshot_is_rejected(world: World) -> None:
    device = _installed(world)
    old_targets = world.net.files["metadata/targets.json"]
    path = world.publish("digits", 2)
    version = world.repo.targets().version
    world.net.files[f"metadata/{version}.targets.json"] = old_targets  # served under the new snapshot's name
    store_before = sorted(p.name for p in world.store.iterdir())
    state_before = (world.device_dir / "trust-state.json").read_bytes()
    targets_before = (world.device_dir / "metadata" / "targets.json").read_bytes()
    with pytest.raises(MixAndMatchAttack, match="not the one the signed snapshot"):
        device.update(world.store, target_path=path)
    assert sorted(p.name for p in world.store.iterdir()) == store_before
    assert (world.device_dir / "trust-state.json").read_bytes() == state_before
    assert (world.device_dir / "metadata" / "targets.json").read_bytes() == targets_before


def test_fast_forward_attack_is_recovered_by_timestamp_key_rotation(world: World) -> None:
    device = _installed(world)
    # The attacker steals the timestamp key and fast-forwards the device to timestamp version 1000.
    stolen = world.stolen_signer("timestamp")
    forged = Metadata.from_bytes(world.net.files["metadata/timestamp.json"])
    forged.signed.version = 1000
    forged.sign(stolen)
    world.net.files["metadata/timestamp.json"] = forged.to_bytes()
    device.refresh()  # signed by a trusted key, so the device accepts it: the attack succeeded this far
    # The honest repository's next timestamp (a low version) now looks like a rollback: the device is stuck.
    path = world.publish("digits", 2)
    with pytest.raises(RollbackAttack):
        device.update(world.store, target_path=path)
    assert not (world.store / "digits-2").exists()
    # Recovery: rotate the timestamp key. The new root revokes the stolen key, so the device drops the
    # fast-forwarded timestamp (it no longer verifies) and accepts the repository's lower version again.
    world.repo.rotate("timestamp")
    world.sync()
    result = device.update(world.store, target_path=path)
    assert result.meta.version == 2
    assert Metadata.from_file(str(world.device_dir / "metadata" / "timestamp.json")).signed.version < 1000


def test_single_compromised_root_key_below_threshold_is_rejected(world: World, tmp_path: Path) -> None:
    device = _installed(world)
    assert world.repo.root().roles["root"].threshold == 2
    stolen_root = world.stolen_signer("root")
    # With one of three root keys the attacker publishes root v2 that trusts their own targets key.
    attacker = ModelRepository.create(tmp_path / "attacker", clock=world.clock)
    evil_targets_key = attacker.root().keys[attacker.root().roles["targets"].keyids[0]]
    root = Metadata.from_bytes(world.repo.root_bytes())
    for keyid in list(root.signed.roles["targets"].keyids):
        root.signed.revoke_key(keyid, "targets")
    root.signed.add_key(evil_targets_key, "targets")
    root.signed.version = 2
    root.sign(stolen_root)
    world.net.files["metadata/2.root.json"] = root.to_bytes()
    before = world.snapshot_device()
    with pytest.raises(BadSignature, match="root was signed by 1/2 keys"):
        device.update(world.store, target_path="digits/digits-1.tar")
    assert world.snapshot_device() == before
    assert device.trusted_root_version() == 1


def test_revoked_targets_key_after_rotation_is_rejected(world: World) -> None:
    device = _installed(world)
    old_targets_key = world.stolen_signer("targets")  # stolen before the operator rotated it
    world.repo.rotate("targets")
    world.sync()
    device.refresh()  # the device follows the rotation (root v2)
    assert device.trusted_root_version() == 2
    evil = make_bundle_tar(world.tmp / "evil", "digits", 99, payload=b"evil")
    world.forge(
        targets_signer=old_targets_key,
        snapshot_signer=world.stolen_signer("snapshot"),
        timestamp_signer=world.stolen_signer("timestamp"),
        evil_tar=evil,
    )
    store_before = sorted(p.name for p in world.store.iterdir())
    with pytest.raises(BadSignature):
        device.update(world.store, target_path="digits/digits-99.tar")
    assert sorted(p.name for p in world.store.iterdir()) == store_before
    assert device.installed_version("digits") == 1


def test_slow_retrieval_hits_the_download_deadline(world: World) -> None:
    path = world.publish("digits", 1)
    ticks = iter(range(0, 10_000, 7))  # every clock read is 7 s later: the bytes trickle in
    device = world.device(config=ClientConfig(download_timeout_s=5), monotonic=lambda: float(next(ticks)))
    with pytest.raises(SlowRetrievalAttack, match="longer than 5 s"):
        device.update(world.store, target_path=path)
    assert list(world.store.iterdir()) == []
