"""The operator's repository: layout, thresholds, idempotent signing, key files, offline root, rotation, refresh."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from trust_helpers import Clock, World
from tuf.api.metadata import Metadata, Root

from edgectl.errors import BundleError, InputFileError, InsecureKeyFile, OutputExistsError
from edgectl.trust import ModelRepository, RepoSettings
from edgectl.trust.keys import PASSPHRASE_ENV


def test_published_layout_uses_consistent_snapshots_and_hash_prefixed_targets(world: World) -> None:
    path = world.publish("digits", 1)
    meta = world.repo.layout.metadata
    root = world.repo.root()
    assert root.consistent_snapshot and root.roles["root"].threshold == 2 and len(root.roles["root"].keyids) == 3
    targets_version = world.repo.targets().version
    assert (meta / f"{targets_version}.targets.json").read_bytes() == (meta / "targets.json").read_bytes()
    info = world.repo.targets().targets[path]
    assert (world.repo.layout.targets / "digits" / f"{info.hashes['sha256']}.digits-1.tar").is_file()
    custom = info.custom["edgectl"]
    assert (custom["model"], custom["version"], custom["formats"]) == ("digits", 1, ["onnx"])
    assert len(custom["manifest_sha256"]) == 64
    for key_file in world.repo.layout.keys.rglob("*.pem"):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_adding_the_same_bundle_twice_is_a_no_op(world: World) -> None:
    tar = world.bundle("digits", 1)
    world.repo.add_target(tar)
    version = world.repo.targets().version
    world.repo.add_target(tar)
    assert world.repo.targets().version == version


def test_same_version_with_different_bytes_is_refused(world: World) -> None:
    world.repo.add_target(world.bundle("digits", 1))
    with pytest.raises(OutputExistsError, match="already signed with different content"):
        world.repo.add_target(world.bundle("digits", 1, payload=b"other weights"))


def test_corrupt_bundle_is_not_signed(world: World) -> None:
    tar = world.bundle("digits", 1)
    data = bytearray(tar.read_bytes())
    data[1500] ^= 0xFF  # inside the manifest: a corrupt bundle, whatever the member
    tar.write_bytes(bytes(data))
    version = world.repo.targets().version
    with pytest.raises(BundleError):
        world.repo.add_target(tar)
    assert world.repo.targets().version == version
    assert not world.repo.layout.targets.exists() or not any(world.repo.layout.targets.rglob("*.tar"))


def test_group_readable_key_is_refused_before_anything_is_written(world: World) -> None:
    key = next(world.repo.layout.online_key_dir("timestamp").glob("*.pem"))
    os.chmod(key, 0o640)
    version = world.repo.targets().version
    with pytest.raises(InsecureKeyFile, match=f"chmod 600 {key}"):
        world.repo.add_target(world.bundle("digits", 1))
    assert world.repo.targets().version == version


def test_passphrase_encrypted_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    repo = ModelRepository.create(tmp_path / "repo", clock=clock)
    key = next(repo.layout.online_key_dir("targets").glob("*.pem"))
    assert b"ENCRYPTED" in key.read_bytes()
    assert repo.refresh(force=True) == ["targets", "snapshot", "timestamp"]
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(InputFileError, match=PASSPHRASE_ENV):
        repo.refresh(force=True)


def test_offline_root_keys_are_needed_only_to_sign_root(tmp_path: Path, clock: Clock) -> None:
    offline = tmp_path / "usb-stick"
    repo = ModelRepository.create(tmp_path / "repo", root_keys_dir=offline, clock=clock)
    assert not (repo.layout.keys / "root").exists() and len(list(offline.glob("*.pem"))) == 3
    online = ModelRepository(tmp_path / "repo", clock=clock)  # the online server: no root keys
    online.refresh(force=True)
    with pytest.raises(InputFileError, match="--root-keys-dir"):
        online.rotate("snapshot")
    old_root = online.root()
    ModelRepository(tmp_path / "repo", root_keys_dir=offline, clock=clock).rotate("root")
    new_md = Metadata.from_bytes((repo.layout.metadata / "2.root.json").read_bytes())
    new_root = new_md.signed
    assert isinstance(new_root, Root) and not set(new_root.roles["root"].keyids) & set(old_root.roles["root"].keyids)
    # The new root carries the old threshold and the new one, so devices can follow the chain.
    old_root.verify_delegate("root", new_md.signed_bytes, new_md.signatures)
    new_root.verify_delegate("root", new_md.signed_bytes, new_md.signatures)
    assert len(list(offline.glob("*.pem"))) == 3  # old root keys deleted, three new ones


def test_rotation_replaces_keys_and_deletes_the_old_files(world: World) -> None:
    old = set(world.repo.root().roles["targets"].keyids)
    new = world.repo.rotate("targets")
    assert not set(new) & old
    assert world.repo.root().version == 2
    files = {p.stem for p in world.repo.layout.online_key_dir("targets").glob("*.pem")}
    assert files == set(new)
    signed = Metadata.from_bytes((world.repo.layout.metadata / "targets.json").read_bytes())
    assert set(signed.signatures) == set(new)


def test_refresh_re_signs_only_what_is_due(world: World) -> None:
    assert world.repo.refresh() == []
    versions = {s.role: s.version or 0 for s in world.repo.status()}
    world.clock.advance(timedelta(hours=13))  # past half of the 1-day timestamp life
    assert world.repo.refresh() == ["timestamp"]
    world.clock.advance(timedelta(days=4))  # past half of the 7-day snapshot life
    assert world.repo.refresh() == ["snapshot", "timestamp"]
    after = {s.role: s.version for s in world.repo.status()}
    assert after["timestamp"] == versions["timestamp"] + 2 and after["targets"] == versions["targets"]


def test_status_warns_before_expiry(world: World) -> None:
    assert all(s.warning is None for s in world.repo.status())
    world.clock.advance(timedelta(hours=20))  # the timestamp has 4 h left of 24 h
    warned = {s.role: s.warning for s in world.repo.status() if s.warning}
    assert list(warned) == ["timestamp"] and "expires in 4h" in str(warned["timestamp"])
    world.clock.advance(timedelta(hours=5))
    assert "EXPIRED" in str({s.role: s.warning for s in world.repo.status()}["timestamp"])


def test_existing_repository_is_not_overwritten(world: World, clock: Clock) -> None:
    with pytest.raises(OutputExistsError):
        ModelRepository.create(world.repo.layout.root, settings=RepoSettings(), clock=clock)


def test_a_lost_timestamp_key_is_replaced_by_rotation(world: World) -> None:
    for key_file in world.repo.layout.online_key_dir("timestamp").glob("*.pem"):
        key_file.unlink()
    with pytest.raises(InputFileError, match="Restore the timestamp key"):
        world.repo.refresh(force=True)
    world.repo.rotate("timestamp")
    path = world.publish("digits", 1)
    assert world.device().update(world.store, target_path=path).meta.version == 1
