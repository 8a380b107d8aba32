"""Director instructions: only fresh, signed, addressed-to-me instructions naming a repository-signed target pass."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from trust_helpers import World, make_bundle_tar

from edgectl.errors import (
    BadSignature,
    ExpiredMetadata,
    ForeignDeviceInstruction,
    ReplayedInstruction,
    UnsignedTarget,
    WrongTarget,
)
from edgectl.trust import DesiredState, sign_instruction
from edgectl.trust.keys import generate_key


def test_signed_instruction_installs_and_advances_the_sequence(world: World) -> None:
    path = world.publish("digits", 1)
    device = world.device()
    result = device.update(world.store, instruction=world.instruct(path, sequence=5))
    assert result.instruction is not None and result.instruction.sequence == 5
    assert (world.store / "digits-1" / "model.onnx").is_file()
    assert device.state_file.load().director_sequence == 5
    assert device.state_file.load().last_deployment == "dep-5"


def test_replayed_instruction_is_rejected(world: World) -> None:
    path1 = world.publish("digits", 1)
    device = world.device()
    first = world.instruct(path1, sequence=1)
    device.mark_installed(device.update(world.store, instruction=first))
    before = world.snapshot_device()
    with pytest.raises(ReplayedInstruction, match="not newer than the last accepted"):
        device.update(world.store, instruction=first)
    assert world.snapshot_device() == before


def test_stale_instruction_with_lower_sequence_is_rejected(world: World) -> None:
    path1 = world.publish("digits", 1)
    path2 = world.publish("digits", 2)
    stale = world.instruct(path2, sequence=3)
    device = world.device()
    device.mark_installed(device.update(world.store, instruction=world.instruct(path1, sequence=4)))
    before = world.snapshot_device()
    with pytest.raises(ReplayedInstruction):
        device.update(world.store, instruction=stale)
    assert world.snapshot_device() == before


def test_expired_instruction_is_rejected(world: World) -> None:
    path = world.publish("digits", 1)
    instruction = world.instruct(path, sequence=1, expires_in=timedelta(hours=1))
    world.clock.advance(timedelta(hours=2))
    device = world.device()
    device.refresh()
    before = world.snapshot_device()
    with pytest.raises(ExpiredMetadata, match="expired at"):
        device.update(world.store, instruction=instruction)
    assert world.snapshot_device() == before
    assert device.state_file.load().director_sequence == 0


def test_instruction_for_another_device_is_rejected(world: World) -> None:
    path = world.publish("digits", 1)
    device = world.device(device_id="dev-1")
    device.refresh()
    before = world.snapshot_device()
    with pytest.raises(ForeignDeviceInstruction, match="'dev-2' was delivered to 'dev-1'"):
        device.update(world.store, instruction=world.instruct(path, sequence=1, device_id="dev-2"))
    assert world.snapshot_device() == before


def test_instruction_signed_by_an_unknown_key_is_rejected(world: World) -> None:
    path = world.publish("digits", 1)
    device = world.device()
    device.refresh()
    before = world.snapshot_device()
    with pytest.raises(BadSignature, match="not signed by the director keys"):
        device.update(world.store, instruction=world.instruct(path, sequence=1, signers=[generate_key().signer]))
    assert world.snapshot_device() == before


def test_instruction_with_edited_fields_is_rejected(world: World) -> None:
    path = world.publish("digits", 1)
    envelope = json.loads(world.instruct(path, sequence=1, device_id="dev-2"))
    envelope["signed"]["device_id"] = "dev-1"  # re-addressed by the broker: the signature no longer matches
    device = world.device()
    with pytest.raises(BadSignature):
        device.update(world.store, instruction=json.dumps(envelope).encode())
    assert list(world.store.iterdir()) == []


def test_instruction_naming_an_unsigned_target_is_rejected(world: World) -> None:
    world.publish("digits", 1)
    tar = make_bundle_tar(world.tmp / "unsigned", "digits", 7)
    from edgectl.fsutil import sha256_file

    digest, length = sha256_file(tar)
    state = DesiredState(
        device_id="dev-1",
        deployment_id="d",
        model="digits",
        version=7,
        target_path="digits/digits-7.tar",
        target_sha256=digest,
        target_length=length,
        sequence=1,
        expires=world.clock() + timedelta(hours=1),
    )
    device = world.device()
    with pytest.raises(UnsignedTarget):
        device.update(world.store, instruction=sign_instruction(state, world.repo.director_signers()))
    assert list(world.store.iterdir()) == []
    assert device.state_file.load().director_sequence == 0


def test_instruction_whose_hash_differs_from_the_signed_target_is_rejected(world: World) -> None:
    path = world.publish("digits", 1)
    envelope = json.loads(world.instruct(path, sequence=1))
    state = DesiredState.from_json(envelope["signed"])
    forged = DesiredState(**{**state.__dict__, "target_sha256": "ab" * 32})
    device = world.device()
    with pytest.raises(WrongTarget, match="repository signed"):
        device.update(world.store, instruction=sign_instruction(forged, world.repo.director_signers()))
    assert list(world.store.iterdir()) == []


def test_director_key_rotation_revokes_the_old_key(world: World) -> None:
    path1 = world.publish("digits", 1)
    old_director = world.repo.director_signers()
    world.repo.rotate("director")
    path2 = world.publish("digits", 2)
    device = world.device()
    with pytest.raises(BadSignature):
        device.update(world.store, instruction=world.instruct(path1, sequence=1, signers=old_director))
    result = device.update(world.store, instruction=world.instruct(path2, sequence=2))
    assert result.meta.version == 2


def test_a_lost_director_key_can_still_be_rotated(world: World) -> None:
    for key_file in world.repo.layout.online_key_dir("director").glob("*.pem"):
        key_file.unlink()  # lost (or seized): only the targets key is needed to replace it
    new_ids = world.repo.rotate("director")
    assert {s.public_key.keyid for s in world.repo.director_signers()} == set(new_ids)
