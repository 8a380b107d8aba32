"""A standard Open Inference Protocol client (Triton's tritonclient.http) works unchanged against the daemon."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import Daemon, reference

httpclient = pytest.importorskip("tritonclient.http")


def test_tritonclient_binary_and_json_inference(daemon: Daemon) -> None:
    client = httpclient.InferenceServerClient(url=daemon.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("digits")
        meta = client.get_model_metadata("digits")
        assert meta["inputs"][0]["name"] == "x" and meta["outputs"][0]["datatype"] == "FP32"
        x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
        for binary in (True, False):
            inp = httpclient.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = httpclient.InferRequestedOutput("y", binary_data=binary)
            result = client.infer("digits", [inp], outputs=[out], request_id="t1")
            np.testing.assert_allclose(result.as_numpy("y"), reference(1.0, x), rtol=1e-5, atol=1e-6)
            assert result.get_response()["id"] == "t1"
        with pytest.raises(Exception, match="no input 'z'"):
            client.infer("digits", [httpclient.InferInput("z", [1, 4], "FP32").set_data_from_numpy(x[:1])])
        index = client.get_model_repository_index()
        assert {row["name"] for row in index} == {"digits", "colors"}
    finally:
        client.close()
