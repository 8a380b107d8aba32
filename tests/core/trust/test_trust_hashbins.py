"""Hash-bin delegation: bundles spread over bin roles; devices fetch only the bins they need; attacks still fail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from trust_helpers import World
from tuf.api.metadata import Metadata, Targets

from edgectl.errors import ConfigError, MixAndMatchAttack
from edgectl.trust import RepoSettings
from edgectl.trust.delegations import bin_for


@pytest.fixture
def binned(make_world: Callable[..., World]) -> World:
    return make_world(RepoSettings(hash_bins=16))


def test_targets_live_in_bins_and_devices_fetch_only_the_bin_they_need(binned: World) -> None:
    paths = [binned.publish(name, 1) for name in ("digits", "faces", "kws")]
    top = binned.repo.targets()
    assert top.targets == {} and top.delegations is not None and top.delegations.roles is not None
    assert len(top.delegations.roles) == 17  # the director and 16 bins
    assert binned.repo.target_count() == 3
    device = binned.device()
    result = device.update(binned.store, instruction=binned.instruct(paths[0], sequence=1))
    assert result.meta.model == "digits"
    fetched_bins = {r.split(".")[1] for r in binned.net.requests if ".bins-" in r}
    assert fetched_bins == {bin_for(paths[0], 16)}


def test_adding_a_bundle_re_signs_one_bin_not_targets_json(binned: World) -> None:
    binned.publish("digits", 1)
    targets_version = binned.repo.targets().version
    path = binned.publish("digits", 2)
    assert binned.repo.targets().version == targets_version
    role = bin_for(path, 16)
    bin_md = Metadata.from_file(str(binned.repo.layout.metadata / f"{role}.json"))
    assert isinstance(bin_md.signed, Targets) and path in bin_md.signed.targets


def test_bin_from_another_snapshot_is_rejected(binned: World) -> None:
    first = binned.publish("digits", 1)
    role = bin_for(first, 16)
    # The next version whose target path hashes into the same bin (paths are fixed strings: deterministic).
    version = next(v for v in range(2, 200) if bin_for(f"digits/digits-{v}.tar", 16) == role)
    old_bin = binned.net.files[f"metadata/{role}.json"]
    second = binned.publish("digits", version)
    bin_version = Metadata.from_file(str(binned.repo.layout.metadata / f"{role}.json")).signed.version
    binned.net.files[f"metadata/{bin_version}.{role}.json"] = old_bin  # served under the new snapshot's name
    device = binned.device()
    with pytest.raises(MixAndMatchAttack):
        device.update(binned.store, target_path=second)
    assert list(binned.store.iterdir()) == []


def test_targets_key_rotation_re_signs_the_bins(binned: World) -> None:
    device = binned.device()
    device.mark_installed(device.update(binned.store, target_path=binned.publish("digits", 1)))
    binned.repo.rotate("targets")
    new_key = binned.repo.root().roles["targets"].keyids[0]
    path = binned.publish("digits", 2)
    bin_md = Metadata.from_file(str(binned.repo.layout.metadata / f"{bin_for(path, 16)}.json"))
    assert set(bin_md.signatures) == {new_key}
    assert device.update(binned.store, target_path=path).meta.version == 2


def test_refresh_re_signs_bins_that_are_due(binned: World) -> None:
    binned.clock.advance(timedelta(days=50))  # past half of the 90-day targets (and bins) life
    done = binned.repo.refresh()
    assert "targets" in done and "16 hash bins" in done and done[-2:] == ["snapshot", "timestamp"]
    assert all(s.warning is None for s in binned.repo.status())


def test_latest_target_needs_a_path_with_bins(binned: World) -> None:
    binned.publish("digits", 1)
    device = binned.device()
    device.refresh()
    with pytest.raises(ConfigError, match="hash bins"):
        device.latest_target("digits")
