"""The device client: happy paths (rotation keeps devices updating), compatibility, size caps, state, transports."""

from __future__ import annotations

from pathlib import Path

import pytest
from trust_helpers import World, make_bundle_tar
from tuf.api.exceptions import DownloadError

from edgectl.bundle import verify_bundle
from edgectl.errors import ConfigError, IncompatibleTarget, StoreError, WrongTarget
from edgectl.trust import ClientConfig, DeviceCapabilities, LocalDirFetcher, ModelUpdater
from edgectl.trust.fetchers import REPO_URL


def test_rotation_of_every_role_keeps_devices_updating(world: World) -> None:
    device = world.device()
    device.mark_installed(
        device.update(world.store, instruction=world.instruct(world.publish("digits", 1), sequence=1))
    )
    for role in ("targets", "snapshot", "timestamp", "root", "director"):
        world.repo.rotate(role)
    path = world.publish("digits", 2)
    result = device.update(world.store, instruction=world.instruct(path, sequence=2))
    device.mark_installed(result)
    assert device.trusted_root_version() == 5  # four top-level rotations, each a new root version
    assert verify_bundle(result.path).version == 2
    assert device.installed_version("digits") == 2
    assert sorted(p.name for p in world.store.iterdir()) == ["digits-1", "digits-2"]


def test_device_reads_from_a_local_repository_folder(world: World, tmp_path: Path) -> None:
    path = world.publish("digits", 1)
    device = ModelUpdater(
        tmp_path / "usb-device",
        LocalDirFetcher(world.repo.layout.root),
        device_id="dev-1",
        bootstrap_root=world.repo.root_bytes(),
        clock=world.clock,
    )
    result = device.update(world.store, target_path=path)
    assert result.manifest.name == "digits" and (result.path / "golden.npz").is_file()
    assert device.latest_target("digits") == path
    assert device.latest_target("other") is None


def test_local_fetcher_refuses_paths_outside_the_repository(world: World) -> None:
    fetcher = LocalDirFetcher(world.repo.layout.root)
    with pytest.raises(DownloadError, match="outside"):
        list(fetcher.fetch(REPO_URL + "keys/targets/x.pem"))
    with pytest.raises(DownloadError, match="outside"):
        list(fetcher.fetch(REPO_URL + "metadata/../keys/root"))


def test_incompatible_format_is_refused_before_download(world: World) -> None:
    path = world.publish("digits", 1, formats=("tflite",))
    device = world.device(capabilities=DeviceCapabilities(formats=frozenset({"onnx"})))
    with pytest.raises(IncompatibleTarget, match="runs only onnx"):
        device.update(world.store, target_path=path)
    assert not any(r.startswith("targets/") for r in world.net.requests)
    assert list(world.store.iterdir()) == []


def test_incompatible_profile_is_refused(world: World) -> None:
    path = world.publish("digits", 1, profile="jetson-orin")
    device = world.device(capabilities=DeviceCapabilities(profiles=frozenset({"rpi4", "rpi5"})))
    with pytest.raises(IncompatibleTarget, match="built for profile 'jetson-orin'"):
        device.update(world.store, target_path=path)


def test_bundle_over_the_device_size_cap_is_refused_before_download(world: World) -> None:
    path = world.publish("digits", 1)
    device = world.device(config=ClientConfig(max_bundle_bytes=4096))
    with pytest.raises(IncompatibleTarget, match="at most 4096"):
        device.update(world.store, target_path=path)
    assert not any(r.startswith("targets/") for r in world.net.requests)


def test_signed_info_that_disagrees_with_the_bundle_is_refused(world: World) -> None:
    world.publish("digits", 1)
    device = world.device()
    # Signed with the real keys, but the signed manifest hash is not the bundle's (a repository-side mistake or a
    # bundle swapped before signing): the device compares the unpacked manifest with the signed info.
    world.forge(
        targets_signer=world.stolen_signer("targets"),
        snapshot_signer=world.stolen_signer("snapshot"),
        timestamp_signer=world.stolen_signer("timestamp"),
        evil_tar=make_bundle_tar(world.tmp / "swap", "digits", 99),
    )
    with pytest.raises(WrongTarget, match="does not match the signed target info"):
        device.update(world.store, target_path="digits/digits-99.tar")
    assert list(world.store.iterdir()) == []
    assert list((world.device_dir / "staging").iterdir()) == []


def test_device_needs_a_root_to_start(world: World, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no trusted root\.json"):
        ModelUpdater(tmp_path / "fresh", world.net, device_id="d")


def test_corrupt_trust_state_is_not_silently_reset(world: World) -> None:
    path = world.publish("digits", 1)
    device = world.device()
    device.mark_installed(device.update(world.store, target_path=path))
    device.state_file.path.write_text("{not json")
    with pytest.raises(StoreError, match="deleting it would let older model versions"):
        device.installed_version("digits")


def test_exactly_one_of_instruction_or_target_path(world: World) -> None:
    with pytest.raises(ConfigError):
        world.device().update(world.store)
