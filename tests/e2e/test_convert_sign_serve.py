"""The three jobs joined up, through the real command line and real processes:

convert a torch.export program -> sign the bundle into a TUF repository -> the device's update client fetches and
verifies it -> the model store installs it (golden check) -> `edgectl serve` answers over HTTP with the same
predictions as the original PyTorch model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from edgectl.runtime.store import ModelStore

from edgectl.errors import RollbackAttack
from edgectl.trust import LocalDirFetcher, ModelUpdater

torch = pytest.importorskip("torch")

EDGECTL = [sys.executable, "-m", "edgectl"]


def _edgectl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*EDGECTL, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"edgectl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _tiny_classifier(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 5),
    )
    return model.eval()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: object) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _convert(tmp: Path, model: torch.nn.Module, x: np.ndarray, version: int) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(model, (torch.from_numpy(x[:2]),), dynamic_shapes=({0: batch},))
    torch.export.save(exported, str(tmp / "net.pt2"))
    np.savez(tmp / "calib.npz", input=x)
    _edgectl(
        "convert", "net.pt2", "--name", "net", "--version", str(version), "--input-shape", "1x1x8x8",
        "--calibration", "calib.npz", "--precision", "fp32,int8", "--out", "bundles", "--force",
        cwd=tmp,
    )  # fmt: skip
    return tmp / "bundles" / f"net-{version}.tar"


@pytest.mark.slow
def test_converted_bundle_is_signed_fetched_installed_and_served(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8), dtype=np.float32)
    model = _tiny_classifier(seed=1)
    tar = _convert(tmp_path, model, x, version=2)

    # operator: keys and a signed repository holding the bundle
    _edgectl("keys", "init", "--repo", "repo", "--root-keys-dir", "root-keys", cwd=tmp_path)
    _edgectl("repo", "add", "repo", str(tar), cwd=tmp_path)
    status = _edgectl("repo", "status", "repo", cwd=tmp_path).stdout
    assert "targets" in status and "timestamp" in status

    # device: verified download through the TUF client, then the model store (golden check) activates it
    root_json = sorted((tmp_path / "repo" / "metadata").glob("1.root.json"))[0].read_bytes()
    updater = ModelUpdater(
        tmp_path / "device" / "trust", LocalDirFetcher(tmp_path / "repo"), device_id="pi-1", bootstrap_root=root_json
    )
    updater.refresh()
    target = updater.latest_target("net")
    assert target == "net/net-2.tar"
    (tmp_path / "device" / "incoming").mkdir(parents=True)
    verified = updater.update(tmp_path / "device" / "incoming", target_path=target)
    assert verified.manifest.name == "net" and verified.manifest.version == 2
    store = ModelStore(tmp_path / "device" / "models")
    store.install(verified.path)
    updater.mark_installed(verified)
    assert store.active_version("net") == 2

    # an older bundle, even one the operator signed, is refused as a rollback
    old_tar = _convert(tmp_path, model, x, version=1)
    _edgectl("repo", "add", "repo", str(old_tar), cwd=tmp_path)
    with pytest.raises(RollbackAttack):
        updater.update(tmp_path / "device" / "incoming", target_path="net/net-1.tar")
    assert store.active_version("net") == 2

    # the daemon serves it; predictions match the original PyTorch model
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finally block below
    proc = subprocess.Popen(
        [*EDGECTL, "serve", "--store", str(tmp_path / "device" / "models"), "--bind", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "daemon not ready within 30 s"
                time.sleep(0.2)
        sample = x[:16]
        answer = _post(f"{base}/predict/net", {"inputs": sample.tolist()})
        served = np.asarray(next(iter(answer["outputs"].values())), dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(sample)).numpy()
        agreement = float((served.argmax(1) == expected.argmax(1)).mean())
        assert served.shape == expected.shape
        assert agreement >= 0.9, f"served model agrees with PyTorch on only {agreement:.0%} of samples"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
