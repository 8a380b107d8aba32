"""The Open Inference Protocol codec: JSON and binary tensors, and every malformed input is a 4xx that explains."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgectl.runtime.protocol import check_finite, decode_infer_request, encode_infer_response

from edgectl.bundle import TensorSpec
from edgectl.errors import RequestError

SPECS = [TensorSpec("x", "float32", (-1, 4))]


def body(inputs: list[dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def binary_request(arr: np.ndarray, *, declared: int | None = None) -> tuple[bytes, str]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(arr.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": arr.nbytes if declared is None else declared},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + arr.astype("<f4").tobytes(), str(len(header))


def test_json_tensor_nested_or_flat_decodes_to_the_declared_shape() -> None:
    flat = decode_infer_request(
        body([{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}]), SPECS
    )
    nested = decode_infer_request(
        body([{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [[0, 1, 2, 3], [4, 5, 6, 7]]}]), SPECS
    )
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])
    assert flat.inputs["x"].dtype == np.float32 and flat.inputs["x"].shape == (2, 4)


def test_binary_tensor_round_trip() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    raw, hlen = binary_request(x)
    req = decode_infer_request(raw, SPECS, header_length=hlen)
    np.testing.assert_array_equal(req.inputs["x"], x)
    assert req.outputs == {"y": True}
    out, headers = encode_infer_response(req, {"y": x * 2}, model="m", version=3)
    n = int(headers["inference-header-content-length"])
    meta = json.loads(out[:n])
    assert meta["model_version"] == "3" and meta["outputs"][0]["parameters"]["binary_data_size"] == 32
    np.testing.assert_array_equal(np.frombuffer(out[n:], dtype="<f4").reshape(2, 4), x * 2)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "no input 'z'; its inputs are"),
        ([{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}], "expects FP32"),
        ([{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}], "expects [-1, 4]"),
        ([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}], "has 3 elements"),
        ([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}], "cannot be read as FP32"),
        ([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, "NaN", 2, 3]}], "strings or mixed"),
        ([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[1, 2], [3]]}], "not a regular list"),
        ([{"name": "x", "shape": "1,4", "datatype": "FP32", "data": [1, 2, 3, 4]}], "list of integers"),
        ([{"name": "x", "shape": [1 << 40, 4], "datatype": "FP32", "data": []}], "at most"),
        ([{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}], "holds no elements"),
        ([], 'needs "inputs"'),
    ],
)
def test_bad_json_tensors_are_4xx_that_say_what_was_expected(inputs: list[dict[str, object]], message: str) -> None:
    with pytest.raises(RequestError) as info:
        decode_infer_request(body(inputs), SPECS)
    assert 400 <= info.value.status < 500
    assert message in str(info.value)


def test_non_json_body_is_rejected() -> None:
    with pytest.raises(RequestError, match="not valid JSON"):
        decode_infer_request(b"\xff\x00garbage", SPECS)
    with pytest.raises(RequestError, match="must be a JSON object"):
        decode_infer_request(b"[1, 2]", SPECS)


def test_truncated_binary_payload_and_wrong_declared_size_are_rejected() -> None:
    x = np.ones((2, 4), dtype=np.float32)
    raw, hlen = binary_request(x)
    with pytest.raises(RequestError, match="truncated"):
        decode_infer_request(raw[:-5], SPECS, header_length=hlen)
    huge, huge_hlen = binary_request(x, declared=1 << 40)
    with pytest.raises(RequestError, match="needs 32 bytes"):
        decode_infer_request(huge, SPECS, header_length=huge_hlen)
    with pytest.raises(RequestError, match="body has only"):
        decode_infer_request(raw, SPECS, header_length=str(len(raw) + 1))
    with pytest.raises(RequestError, match="bytes after"):
        decode_infer_request(raw + b"xx", SPECS, header_length=hlen)


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(RequestError, match="NaN or Inf"):
        check_finite({"x": np.array([1.0, np.nan], dtype=np.float32)})
    check_finite({"x": np.array([1, 2], dtype=np.int64)})


def test_unknown_requested_output_is_rejected() -> None:
    req = decode_infer_request(
        body([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], outputs=[{"name": "nope"}]),
        SPECS,
    )
    with pytest.raises(RequestError, match="no output"):
        encode_infer_response(req, {"y": np.zeros((1, 3), np.float32)}, model="m", version=1)
