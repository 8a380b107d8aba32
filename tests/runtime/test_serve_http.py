"""The daemon over real HTTP on loopback: Open Inference Protocol, /predict, metrics, repository API, hot swap."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from edgectl.runtime.store import ModelStore
from PIL import Image
from runtime_helpers import Daemon, reference

from edgectl.bundle import unpack_bundle

X = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)


def infer_json(x: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def test_server_health_and_model_metadata(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.url) as c:
        assert c.get("/v2").json()["extensions"] == ["binary_tensor_data", "model_repository"]
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").status_code == 200
        meta = c.get("/v2/models/digits").json()
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
        assert c.get("/v2/models/digits/versions/1").status_code == 200
        assert c.get("/v2/models/digits/versions/1/ready").json()["ready"] is True
        r = c.get("/v2/models/digits/versions/9")
        assert r.status_code == 404 and "version 9 is not loaded" in r.json()["error"]
        r = c.get("/v2/models/nope")
        assert r.status_code == 404 and "Unknown model 'nope'" in r.json()["error"]
        assert c.get("/openapi.json").json()["info"]["title"] == "edgectl serve"


def test_infer_json_and_binary_tensors_give_the_model_outputs(daemon: Daemon) -> None:
    want = reference(1.0, X)
    with httpx.Client(base_url=daemon.url) as c:
        r = c.post("/v2/models/digits/infer", json={**infer_json(X), "id": "r1"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["id"] == "r1" and out["model_version"] == "1"
        np.testing.assert_allclose(np.array(out["outputs"][0]["data"]).reshape(2, 3), want, rtol=1e-5, atol=1e-6)

        header = json.dumps(
            {
                "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
                "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
            }
        ).encode()
        r = c.post(
            "/v2/models/digits/versions/1/infer",
            content=header + X.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        n = int(r.headers["inference-header-content-length"])
        y = np.frombuffer(r.content[n:], dtype="<f4").reshape(2, 3)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_predict_plain_json_and_image_upload(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.url) as c:
        r = c.post("/predict/digits", json={"inputs": X[0].tolist()})  # one example, no batch dimension
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"]["y"], reference(1.0, X[:1]), rtol=1e-5, atol=1e-6)
        assert r.json()["argmax"]["y"] == [int(reference(1.0, X[:1]).argmax())]
        assert c.post("/predict/digits", json={"x": X.tolist()}).json()["model_version"] == "1"

        img = np.zeros((16, 16, 3), dtype=np.uint8)
        img[..., 0], img[..., 1], img[..., 2] = 255, 128, 0
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        r = c.post("/predict/colors", files={"file": ("x.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        # resize 16->8 and crop 8 keep a flat image flat: the channel means are the pixel values / 255
        np.testing.assert_allclose(r.json()["outputs"]["y"][0], [1.0, 128 / 255, 0.0], atol=1e-3)
        r = c.post("/predict/colors", files={"file": ("x.png", b"not an image", "image/png")})
        assert r.status_code == 400 and "not an image" in r.json()["error"]
        r = c.post("/predict/digits", files={"file": ("x.png", buf.getvalue(), "image/png")})
        assert r.status_code == 415 and "not an image model" in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/digits/infer", b"{not json", 400, "not valid JSON"),
        ("/v2/models/digits/infer", json.dumps(infer_json(np.ones((1, 5), np.float32))), 400, "expects [-1, 4]"),
        (
            "/v2/models/digits/infer",
            json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, "NaN", 2, 3]}]}),
            400,
            "cannot be read as FP32",
        ),
        (
            "/v2/models/digits/infer",
            json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1e39, 2, 3]}]}),
            400,
            "NaN or Inf",
        ),
        ("/v2/models/digits/versions/x/infer", json.dumps(infer_json(X)), 404, "positive integer"),
        ("/v2/models/nope/infer", json.dumps(infer_json(X)), 404, "Unknown model"),
        ("/predict/digits", b"[1,2", 400, "not valid JSON"),
        ("/predict/digits", json.dumps({"inputs": [[1, 2]]}), 400, "expects [-1, 4]"),
        ("/predict/digits", json.dumps({"y": [1, 2, 3, 4]}), 400, "Expected the keys ['x']"),
    ],
)
def test_bad_requests_are_4xx_with_an_error_message(
    daemon: Daemon, path: str, body: bytes | str, status: int, message: str
) -> None:
    r = httpx.post(daemon.url + path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_truncated_binary_request_over_http(daemon: Daemon) -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}]}
    ).encode()
    r = httpx.post(
        daemon.url + "/v2/models/digits/infer",
        content=header + X.tobytes()[:20],
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and "truncated" in r.json()["error"]


def test_metrics_count_requests_batches_and_memory(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.url) as c:
        for _ in range(3):
            assert c.post("/v2/models/digits/infer", json=infer_json(X)).status_code == 200
        text = c.get("/metrics").text
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}
    assert lines['edgectl_requests_total{model="digits",version="1",outcome="success"}'] >= 3
    assert lines['edgectl_requests_total{model="digits",version="1",outcome="bad_request"}'] >= 1
    assert lines['edgectl_batch_size_count{model="digits",version="1"}'] >= 3
    assert lines['edgectl_model_ready{model="digits",version="1"}'] == 1
    assert lines['edgectl_model_load_seconds{model="digits",version="1"}'] > 0
    assert 10e6 < lines["process_resident_memory_bytes"] < 2e9
    assert 'edgectl_request_duration_seconds_bucket{model="digits",version="1",le="+Inf"}' in lines


def test_repository_index_unload_and_load(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.url) as c:
        index = {row["name"]: row for row in c.post("/v2/repository/index").json()}
        assert index["digits"]["state"] == "READY" and index["colors"]["version"] == "1"
        assert c.post("/v2/repository/models/colors/unload").status_code == 200
        r = c.post("/predict/colors", json={"inputs": [[0.0]]})
        assert r.status_code == 503 and "not ready" in r.json()["error"] and r.headers["retry-after"]
        assert c.get("/v2/repository/index").json()[0]["state"] == "UNLOADED"
        assert c.post("/v2/repository/models/colors/load").json()["state"] == "READY"
        assert c.get("/v2/models/colors/ready").status_code == 200
        assert c.post("/v2/repository/models/ghost/load").status_code == 404


def _install_unchecked(store: ModelStore, tar: Path, scratch: Path) -> int:
    """Put a bundle into the store without the install-time golden check (as a broken runtime update would)."""
    unpacked = unpack_bundle(tar, scratch)
    version = int(unpacked.name.rsplit("-", 1)[1])
    shutil.move(unpacked, store.root / "digits" / str(version))
    return version


def test_hot_swap_under_load_fails_no_request_and_a_bad_version_keeps_the_old_one(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    store = ModelStore(tmp_path / "models")
    store.install(bundles["v1"])
    errors: list[str] = []
    versions_seen: set[str] = set()
    stop = threading.Event()
    want = {"1": reference(1.0, X), "2": reference(2.0, X)}

    def client() -> None:
        with httpx.Client(base_url=d.url, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/v2/models/digits/infer", json=infer_json(X))
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
                    continue
                out = r.json()
                v = out["model_version"]
                versions_seen.add(v)
                y = np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(2, 3)
                if not np.allclose(y, want[v], rtol=1e-5, atol=1e-6):
                    errors.append(f"version {v} answered wrong outputs")

    with Daemon(store.root, "--poll-interval-s", "0.2") as d:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        store.install(bundles["v2"])  # the daemon notices the new active pointer
        deadline = time.monotonic() + 15
        while "2" not in versions_seen and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        # A version that fails its golden check on this runtime: the daemon must keep serving version 2.
        bad = _install_unchecked(store, bundles["bad"], tmp_path)
        store.activate("digits", bad)
        deadline = time.monotonic() + 15
        reason = ""
        while not reason and time.monotonic() < deadline:
            rows = httpx.get(d.url + "/v2/repository/index").json()
            reason = rows[0]["reason"]
            time.sleep(0.1)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert httpx.get(d.url + "/v2/models/digits").json()["versions"] == ["2"]
    assert errors == []
    assert versions_seen == {"1", "2"}
    assert "differs from the golden outputs" in reason
    assert os.path.isdir(store.root / "digits" / "1")


def test_drift_scores_appear_in_metrics(daemon: Daemon) -> None:
    def gauges() -> dict[str, float]:
        text = httpx.get(daemon.url + "/metrics").text
        return {
            ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
            for ln in text.splitlines()
            if ln.startswith("edgectl_drift")
        }

    out_of_range = 'edgectl_drift_out_of_range_values{model="digits",version="1",input="x"}'
    before = gauges().get(out_of_range, 0.0)
    far = np.array([[50.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert httpx.post(daemon.url + "/v2/models/digits/infer", json=infer_json(far)).status_code == 200
    after = gauges()
    assert after[out_of_range] == before + 1
    assert after['edgectl_drift_window_rows{model="digits",version="1"}'] >= 1
    assert 'edgectl_drift_psi{model="digits",version="1",output="y",kind="top1"}' in after
    assert after['edgectl_drift_mean_shift_max{model="digits",version="1",input="x"}'] > 0


def test_overload_is_refused_at_once_and_repository_load_picks_up_a_new_version(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    store = ModelStore(tmp_path / "models")
    store.install(bundles["v1"])
    # Two requests in flight at most (queue 1 + batch 1); the store is polled rarely, so only the API swaps.
    with Daemon(store.root, "--max-queue", "1", "--max-batch-size", "1", "--poll-interval-s", "3600") as d:
        statuses: list[int] = []
        retry_after: set[str] = set()
        refusals: set[bool] = set()

        def client() -> None:
            with httpx.Client(base_url=d.url, timeout=10) as c:
                for _ in range(15):
                    r = c.post("/v2/models/digits/infer", json=infer_json(X))
                    statuses.append(r.status_code)
                    if r.status_code == 429:
                        retry_after.add(r.headers["retry-after"])
                        refusals.add("(the limit); retry shortly" in r.json()["error"])

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(statuses) == {200, 429} and retry_after == {"1"} and refusals == {True}

        store.install(bundles["v2"])
        assert httpx.get(d.url + "/v2/models/digits").json()["versions"] == ["1"]  # not polled yet
        r = httpx.post(d.url + "/v2/repository/models/digits/load")
        assert r.status_code == 200 and r.json()["version"] == "2"
        out = httpx.post(d.url + "/v2/models/digits/infer", json=infer_json(X)).json()
        np.testing.assert_allclose(
            np.array(out["outputs"][0]["data"]).reshape(2, 3), reference(2.0, X), rtol=1e-5, atol=1e-6
        )


def test_daemon_starts_and_serves_the_good_models_when_one_fails_its_golden_check(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    store = ModelStore(tmp_path / "models")
    store.install(bundles["image"])
    store.install(bundles["v1"])
    store.activate("digits", _install_unchecked(store, bundles["bad"], tmp_path))
    d = Daemon(store.root, "--poll-interval-s", "0.2").start(probe="/v2/health/live")  # live, not ready
    try:
        assert httpx.get(d.url + "/v2/health/ready").status_code == 503  # not every model serves
        r = httpx.post(d.url + "/predict/digits", json={"inputs": X[0].tolist()})
        assert r.status_code == 503 and "differs from the golden outputs" in r.json()["error"]
        assert httpx.get(d.url + "/v2/models/colors/ready").status_code == 200
        store.activate("digits", 1)  # the operator rolls back; the daemon picks it up
        deadline = time.monotonic() + 15
        while httpx.get(d.url + "/v2/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.post(d.url + "/predict/digits", json={"inputs": X[0].tolist()}).json()["model_version"] == "1"
    finally:
        d.stop()


def test_non_finite_outputs_are_answered_not_a_500(daemon: Daemon) -> None:
    extreme = np.array([[3e38, 3e38, -3e38, 3e38]], dtype=np.float32)  # finite inputs, overflowing logits
    r = httpx.post(daemon.url + "/predict/digits", json={"inputs": extreme.tolist()})
    assert r.status_code == 200
    assert np.isnan(json.loads(r.text)["outputs"]["y"][0]).all()
    r = httpx.post(daemon.url + "/v2/models/digits/infer", json=infer_json(extreme))
    assert r.status_code == 200 and np.isnan(json.loads(r.text)["outputs"][0]["data"]).all()
