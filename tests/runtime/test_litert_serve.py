"""A bundle holding only TFLite artifacts, installed into a model store and served by a real daemon over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from edgectl.runtime.backends import SessionOptions
from edgectl.runtime.backends.litert import LiteRTBackend
from edgectl.runtime.store import ModelStore

from edgectl.bundle import Artifact, Manifest, TensorSpec, pack_bundle, save_golden, write_manifest

httpx = pytest.importorskip("httpx")
pytest.importorskip("ai_edge_litert", reason="the LiteRT backend needs the tflite extra")
torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch", reason="the test model is exported with the convert-tflite extra")

from edgectl.converter.tflite import TfliteOptions, export_tflite_artifacts  # noqa: E402

X = np.random.default_rng(3).standard_normal((3, 12)).astype(np.float32)


def _model() -> torch.nn.Module:
    torch.manual_seed(4)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()


def _expected(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(_model()(torch.from_numpy(x)).numpy())


def _tflite_bundle(root: Path) -> Path:
    """What `edgectl convert --format tflite` packs: int8 first (preferred), fp32 second, golden per artifact."""
    d = root / "tiny-1"
    arts = export_tflite_artifacts(
        _model(),
        (torch.from_numpy(X[:1]),),
        precisions=["int8", "fp32"],
        calibration=[{"x": np.random.default_rng(0).standard_normal((32, 12)).astype(np.float32)}],
        input_names=["x"],
        output_names=["scores"],
        out_dir=d,
        options=TfliteOptions(),
    )
    golden = {a.path.name: LiteRTBackend().load(a.path, SessionOptions(threads=1)).run({"x": X[:2]}) for a in arts}
    save_golden(d / "golden.npz", {"x": X[:2]}, golden)
    manifest = Manifest(
        name="tiny",
        version=1,
        inputs=[TensorSpec("x", "float32", (-1, 12))],
        outputs=[TensorSpec("scores", "float32", (-1, 4))],
        artifacts=[
            Artifact(path=a.path.name, format="tflite", precision=a.precision, quantization=a.quantization)
            for a in arts
        ],
    )
    write_manifest(d, manifest)
    return pack_bundle(d, root / "tiny-1.tar")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(daemon URL, the bundle's int8 file) for a store holding only the TFLite bundle."""
    root = tmp_path_factory.mktemp("tflite-serve")
    store = ModelStore(root / "models", options=SessionOptions(threads=1))
    store.install(_tflite_bundle(root))  # golden check with the LiteRT backend happens here
    assert store.active_version("tiny") == 1
    port = _free_port()
    log = root / "serve.log"
    cmd = [sys.executable, "-m", "edgectl", "serve", "--store", str(store.root), "--bind", f"127.0.0.1:{port}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, "--threads", "1", "--max-batch-size", "4"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"edgectl serve exited with {proc.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"edgectl serve did not become ready: {log.read_text()}")
            time.sleep(0.2)
        yield url, root / "tiny-1" / "model.int8.tflite"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_daemon_serves_a_tflite_only_bundle_with_the_litert_backend(served: tuple[str, Path]) -> None:
    url, int8_file = served
    with httpx.Client(base_url=url, timeout=10.0) as c:
        meta = c.get("/v2/models/tiny").json()
        assert meta["platform"] == "litert_tflite"
        assert meta["parameters"]["artifact"] == "model.int8.tflite" and meta["parameters"]["precision"] == "int8"
        body = {"inputs": [{"name": "x", "shape": [3, 12], "datatype": "FP32", "data": X.ravel().tolist()}]}
        r = c.post("/v2/models/tiny/infer", json=body)
        assert r.status_code == 200, r.text
        (out,) = r.json()["outputs"]
        assert out["name"] == "scores" and out["shape"] == [3, 4]
        got = np.array(out["data"], dtype=np.float32).reshape(3, 4)
    # Exactly what the int8 file gives in-process, and close to the PyTorch model it came from.
    direct = LiteRTBackend().load(int8_file, SessionOptions(threads=1)).run({"x": X})["scores"]
    np.testing.assert_allclose(got, direct, atol=1e-6)
    want = _expected(X)
    assert np.abs(got - want).mean() < 0.1 * np.ptp(want)


def test_daemon_batches_single_rows_of_a_batch_one_tflite_model(served: tuple[str, Path]) -> None:
    with httpx.Client(base_url=served[0], timeout=10.0) as c:
        answers = [
            c.post(
                "/v2/models/tiny/infer",
                json={"inputs": [{"name": "x", "shape": [1, 12], "datatype": "FP32", "data": row.tolist()}]},
            ).json()["outputs"][0]["data"]
            for row in X
        ]
        whole = c.post(
            "/v2/models/tiny/infer",
            json={"inputs": [{"name": "x", "shape": [3, 12], "datatype": "FP32", "data": X.ravel().tolist()}]},
        ).json()["outputs"][0]["data"]
    np.testing.assert_allclose(np.array(answers).ravel(), np.array(whole), atol=1e-6)
