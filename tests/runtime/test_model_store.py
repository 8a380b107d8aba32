"""The model store: install verifies and golden-checks before activating; every change is atomic; kill -9 safe."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from edgectl.runtime import loader
from edgectl.runtime.backends import SessionOptions, backend_for
from edgectl.runtime.loader import load_version
from edgectl.runtime.store import ModelStore
from runtime_helpers import make_bundle

from edgectl.bundle import Artifact, read_manifest, unpack_bundle, write_manifest
from edgectl.cli import cli
from edgectl.errors import BundleError, GoldenMismatchError, MissingDependencyError, StoreError


def test_install_activates_and_lists_versions_side_by_side(store: ModelStore, bundles: dict[str, Path]) -> None:
    assert store.active_version("digits") == 1
    store.install(bundles["v2"])
    assert store.active_version("digits") == 2
    assert store.entries()[0].versions == (1, 2)
    assert store.check() == []


def test_golden_mismatch_is_not_installed_and_old_version_stays_active(
    store: ModelStore, bundles: dict[str, Path]
) -> None:
    with pytest.raises(GoldenMismatchError, match="differs from the golden outputs"):
        store.install(bundles["bad"])
    assert store.active_version("digits") == 1
    assert store.versions("digits") == (1,)
    assert list((store.root / ".staging").iterdir()) == []


def test_tampered_bundle_is_rejected(tmp_path: Path, bundles: dict[str, Path]) -> None:
    bad = tmp_path / "bad.tar"
    with tarfile.open(bundles["v1"]) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m)
            payload = data.read() if data else b""
            if m.name.endswith("model.onnx"):
                payload = payload[:-1] + bytes([payload[-1] ^ 1])
            dst.addfile(m, io.BytesIO(payload))
    s = ModelStore(tmp_path / "models")
    with pytest.raises(BundleError, match="sha256"):
        s.install(bad)
    assert s.models() == []


def test_activate_rollback_and_remove(store: ModelStore, bundles: dict[str, Path]) -> None:
    store.install(bundles["v2"])
    store.activate("digits", 1)
    assert store.active_version("digits") == 1
    assert store.rollback("digits") == 2
    with pytest.raises(StoreError, match="is active"):
        store.remove("digits", 2)
    store.remove("digits", 1)
    assert store.versions("digits") == (2,)
    with pytest.raises(StoreError, match="no version 7"):
        store.activate("digits", 7)
    store.remove("digits")
    assert store.models() == []


def test_reinstalling_the_same_version_is_idempotent(store: ModelStore, bundles: dict[str, Path]) -> None:
    store.install(bundles["v2"])
    store.activate("digits", 1)
    store.install(bundles["v2"])  # identical content: only re-activates
    assert store.active_version("digits") == 2


def test_second_writer_waits_then_gives_up_with_store_error(store: ModelStore, bundles: dict[str, Path]) -> None:
    other = ModelStore(store.root, lock_timeout_s=0.2)
    with store.lock(), pytest.raises(StoreError, match="locked by another edgectl process"):
        other.install(bundles["v2"])


def test_models_cli_install_list_activate(tmp_path: Path, bundles: dict[str, Path]) -> None:
    runner = CliRunner()
    root = str(tmp_path / "m")
    r = runner.invoke(cli, ["models", "install", str(bundles["v1"]), "--store", root])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["models", "install", str(bundles["v2"]), "--store", root, "--no-activate"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["models", "list", "--store", root])
    assert "active=1" in r.output and "*1, 2" in r.output
    r = runner.invoke(cli, ["models", "activate", "digits", "5", "--store", root])
    assert r.exit_code == StoreError.exit_code and "error: Model 'digits' has no version 5" in r.output
    r = runner.invoke(cli, ["models", "install", str(bundles["bad"]), "--store", root])
    assert r.exit_code == GoldenMismatchError.exit_code and "Traceback" not in r.output
    r = runner.invoke(cli, ["models", "check", "--store", root])
    assert r.exit_code == 0 and "consistent" in r.output


INSTALL_LOOP = """
import sys
from edgectl.runtime.store import ModelStore
store = ModelStore(sys.argv[1])
tars = sys.argv[2:]
i = 0
while True:
    store.install(tars[i % len(tars)])
    store.activate("digits", 1 + i % 2)
    if i % 3 == 2:
        store.remove("digits", 1 + (i + 1) % 2)  # the version that is not active
    i += 1
"""


def test_kill_9_during_install_leaves_a_consistent_store(tmp_path: Path, bundles: dict[str, Path]) -> None:
    root = tmp_path / "models"
    ModelStore(root).install(bundles["v1"])
    rng = random.Random(7)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", INSTALL_LOOP, str(root), str(bundles["v1"]), str(bundles["v2"])])
        time.sleep(rng.uniform(0.3, 1.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = ModelStore(root)
        assert store.check() == []
        active = store.active_version("digits")
        assert active in store.versions("digits")  # never nothing, never a version that is not all there
        load_version(store.version_path("digits", active), store.options).close()  # and it passes its checks
    with ModelStore(root).lock():  # the next writer clears what the killed one left
        assert list((root / ".staging").iterdir()) == []


def test_a_version_number_names_one_bundle_forever(tmp_path: Path, store: ModelStore) -> None:
    other = make_bundle(tmp_path / "other", version=1, scale=3.0)  # same name and version, different weights
    with pytest.raises(StoreError, match="already installed with different content"):
        store.install(other)
    assert store.check() == [] and store.active_version("digits") == 1


def test_artifact_is_picked_in_manifest_order_by_installed_backend(
    tmp_path: Path, bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:

    d = unpack_bundle(bundles["v1"], tmp_path)
    (d / "model.tflite").write_bytes(b"a LiteRT flatbuffer would be here")
    manifest = read_manifest(d)
    manifest.artifacts.insert(0, Artifact(path="model.tflite", format="tflite", precision="int8"))
    write_manifest(d, manifest)

    def only_onnx(fmt: str) -> object:
        if fmt == "tflite":
            raise MissingDependencyError("ai-edge-litert", extra="tflite", purpose="Running TFLite models")
        return backend_for(fmt)

    monkeypatch.setattr(loader, "backend_for", only_onnx)
    model = loader.load_version(d, SessionOptions(threads=1))
    assert model.artifact.path == "model.onnx" and model.golden is not None  # the preferred tflite is skipped
    model.close()

    monkeypatch.setattr(loader, "backend_for", lambda fmt: only_onnx("tflite"))
    with pytest.raises(MissingDependencyError, match="ai-edge-litert"):
        loader.select_artifact(manifest)


def test_unpacked_bundle_directory_installs_from_a_verified_copy(
    tmp_path: Path, store: ModelStore, bundles: dict[str, Path]
) -> None:
    unpacked = unpack_bundle(bundles["v2"], tmp_path / "incoming")
    manifest = store.install(unpacked)
    assert (manifest.name, manifest.version) == ("digits", 2)
    assert store.active_version("digits") == 2
    assert unpacked.is_dir(), "the source directory is copied, never moved or consumed"
    assert store.check() == []


def test_tampered_bundle_directory_is_refused_and_nothing_changes(
    tmp_path: Path, store: ModelStore, bundles: dict[str, Path]
) -> None:
    unpacked = unpack_bundle(bundles["v2"], tmp_path / "incoming")
    (unpacked / "extra.py").write_text("print('not in the manifest')\n")
    with pytest.raises(BundleError, match="does not list"):
        store.install(unpacked)
    assert store.active_version("digits") == 1
    assert store.versions("digits") == (1,)
