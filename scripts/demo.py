"""`make demo`: the main job end to end on embedded defaults, with nothing but this checkout.

1. trains a small CNN on scikit-learn's digits (real 8x8 scans of handwritten digits, shipped in the package);
2. `edgectl convert`: TorchScript -> ONNX fp32 + int8 and TFLite, validated against the original, packaged;
3. `edgectl keys init` / `edgectl repo add`: signs the bundle into a TUF repository;
4. `edgectl models install`: verifies the bundle and its golden outputs, activates it in a model store;
5. `edgectl serve` on 127.0.0.1 and a prediction over HTTP (the simple /predict path and the Open Inference
   Protocol), then the daemon is stopped.

Everything goes to ./demo-out (removed first).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

OUT = Path("demo-out")
EDGECTL = [sys.executable, "-m", "edgectl"]


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(*args: str) -> None:
    print("$ edgectl " + " ".join(args), flush=True)
    subprocess.run([*EDGECTL, *args], check=True)


def train_digits(out: Path) -> tuple[np.ndarray, np.ndarray]:
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _epoch in range(15):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    print(f"trained a digits CNN: {acc * 100:.1f}% on {len(x_test)} held-out scans")
    torch.jit.save(torch.jit.trace(model, torch.from_numpy(x_test[:1])), str(out / "digits.pt"))
    np.savez(out / "calib.npz", input=x_train[:256])
    np.save(out / "val.npy", x_test)
    np.save(out / "labels.npy", y_test)
    return x_test, y_test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: object | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def serve_and_predict(store: Path, x_test: np.ndarray, y_test: np.ndarray) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"$ edgectl serve --store {store} --bind 127.0.0.1:{port}", flush=True)
    proc = subprocess.Popen([*EDGECTL, "serve", "--store", str(store), "--bind", f"127.0.0.1:{port}"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the daemon did not become ready; see its log above") from None
                time.sleep(0.2)
        meta = http("GET", f"{base}/v2/models/digits")
        print("GET /v2/models/digits ->", json.dumps(meta)[:300])
        sample = x_test[:4]
        answer = http("POST", f"{base}/predict/digits", {"inputs": sample.tolist()})
        print("POST /predict/digits ->", json.dumps(answer)[:300])
        oip = http(
            "POST",
            f"{base}/v2/models/digits/infer",
            {
                "inputs": [
                    {
                        "name": meta["inputs"][0]["name"],
                        "shape": list(sample.shape),
                        "datatype": "FP32",
                        "data": sample.ravel().tolist(),
                    }
                ]
            },
        )
        logits = np.asarray(oip["outputs"][0]["data"], dtype=np.float32).reshape(oip["outputs"][0]["shape"])
        print(f"POST /v2/models/digits/infer -> predicted {logits.argmax(1).tolist()}, true {y_test[:4].tolist()}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    step("1. train a small CNN on scikit-learn's digits")
    x_test, y_test = train_digits(OUT)
    step("2. convert: TorchScript -> ONNX (fp32, int8) + TFLite, validated and packaged")
    formats = "onnx,tflite" if _has_litert_torch() else "onnx"
    run(
        "convert", str(OUT / "digits.pt"),
        "--name", "digits",
        "--input-shape", "1x1x8x8",
        "--calibration", str(OUT / "calib.npz"),
        "--validation", str(OUT / "val.npy"),
        "--labels", str(OUT / "labels.npy"),
        "--precision", "fp32,int8",
        "--format", formats,
        "--out", str(OUT / "bundles"),
    )  # fmt: skip
    step("3. sign it into a TUF repository (the operator's side of a rollout)")
    run("keys", "init", "--repo", str(OUT / "fleet-repo"), "--root-keys-dir", str(OUT / "offline-root-keys"))
    run("repo", "add", str(OUT / "fleet-repo"), str(OUT / "bundles" / "digits-1.tar"))
    run("repo", "status", str(OUT / "fleet-repo"))
    step("4. install the bundle into a model store (verify, golden check, activate)")
    run("models", "install", str(OUT / "bundles" / "digits-1.tar"), "--store", str(OUT / "models"))
    run("models", "list", "--store", str(OUT / "models"))
    step("5. serve it on 127.0.0.1 and predict over HTTP")
    serve_and_predict(OUT / "models", x_test, y_test)
    print("\ndemo finished: bundle, report and store are in ./demo-out")


def _has_litert_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("litert_torch") is not None


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
