"""Tiny ONNX models and bundles for the runtime tests (built with onnx.helper: no torch)."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgectl.bundle import Artifact, Manifest, TensorSpec, pack_bundle, save_golden, write_manifest

#: Drift baseline of digits v1: standard-normal inputs, outputs spread evenly over [0, 1], classes balanced.
REFERENCE = {
    "inputs": {"x": {"channel_axis": 1, "mean": [0.0] * 4, "std": [1.0] * 4, "min": -4.0, "max": 4.0, "count": 1000}},
    "outputs": {
        "y": {
            "mean": 0.333,
            "std": 0.2,
            "histogram": {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "counts": [250, 250, 250, 250]},
            "top1_distribution": [1 / 3, 1 / 3, 1 / 3],
        }
    },
}


def linear_model(path: Path, *, features: int = 4, classes: int = 3, scale: float = 1.0, batch: bool = True) -> Path:
    """y = softmax(x @ W * scale + b); W and b are fixed, so each scale gives a distinct, known model."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((features, classes)) * scale).astype(np.float32)
    b = np.linspace(-0.5, 0.5, classes, dtype=np.float32)
    dim0: Any = "N" if batch else 1
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim0, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim0, classes])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def image_model(path: Path, *, size: int = 8) -> Path:
    """x [N,3,size,size] -> y [N,3]: per-channel means (checks the image preprocessing end to end)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
        "image",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def make_bundle(
    root: Path,
    *,
    name: str = "digits",
    version: int = 1,
    scale: float = 1.0,
    features: int = 4,
    corrupt_golden: bool = False,
    image: bool = False,
    preprocessing: dict[str, Any] | None = None,
    reference_stats: dict[str, Any] | None = None,
) -> Path:
    """Build ``<root>/<name>-<version>.tar`` with golden outputs computed by onnxruntime. Returns the tar."""
    d = root / f"{name}-{version}"
    d.mkdir(parents=True)
    if image:
        image_model(d / "model.onnx")
        x = np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32)
        inputs, outputs = [TensorSpec("x", "float32", (-1, 3, 8, 8))], [TensorSpec("y", "float32", (-1, 3))]
    else:
        linear_model(d / "model.onnx", features=features, scale=scale)
        x = np.random.default_rng(1).standard_normal((3, features)).astype(np.float32)
        inputs, outputs = [TensorSpec("x", "float32", (-1, features))], [TensorSpec("y", "float32", (-1, 3))]
    (y,) = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    if corrupt_golden:
        y = y + 0.5
    save_golden(d / "golden.npz", {"x": x}, {"model.onnx": {"y": y}})
    manifest = Manifest(
        name=name,
        version=version,
        inputs=inputs,
        outputs=outputs,
        artifacts=[Artifact(path="model.onnx", format="onnx", precision="fp32")],
        preprocessing=preprocessing,
        reference_stats=reference_stats or {},
    )
    write_manifest(d, manifest)
    return pack_bundle(d, root / f"{name}-{version}.tar")


def reference(scale: float, x: np.ndarray, features: int = 4) -> np.ndarray:
    """What the linear model of ``scale`` answers for ``x`` (computed in numpy, independent of the server)."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((features, 3)) * scale).astype(np.float32)
    b = np.linspace(-0.5, 0.5, 3, dtype=np.float32)
    logits = x @ w + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """A real ``python -m edgectl serve`` process on a free loopback port."""

    def __init__(self, store: Path, *args: str, env: dict[str, str] | None = None, scheme: str = "http") -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "edgectl",
            "serve",
            "--store",
            str(store),
            "--bind",
            f"127.0.0.1:{self.port}",
            *args,
        ]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self, *, timeout_s: float = 30.0, headers: dict[str, str] | None = None, probe: str = "/v2/health/ready"
    ) -> Daemon:
        """Start the process and wait until ``probe`` answers 200 (its output goes to ``self.log``)."""
        self.log = Path(tempfile.mkstemp(prefix="edgectl-serve-", suffix=".log")[1])
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.output()}")
            try:
                r = httpx.get(f"{self.url}{probe}", timeout=1.0, verify=False, headers=headers)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"daemon did not become ready in time: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """Stop the daemon (SIGTERM, then SIGKILL after 15 s) and return its output."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        out = self.output()
        self.log.unlink(missing_ok=True)
        return out

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
