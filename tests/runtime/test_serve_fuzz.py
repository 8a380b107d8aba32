"""Schema-driven fuzzing of the HTTP API against a real daemon: no input gives a 5xx or kills the process."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_helpers import Daemon

DATATYPES = ["FP32", "FP16", "FP64", "INT8", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "fp32", ""]
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32),  # finite float32 values up to 3.4e38, which overflow inside the model
    st.booleans(),
)
json_scalars = st.one_of(st.none(), numbers, st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=24,
)
tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "y", ""]) | st.text(max_size=6),
        "shape": st.lists(st.integers(min_value=-2, max_value=2**40), max_size=4) | json_values,
        "datatype": st.sampled_from(DATATYPES) | json_scalars,
    },
    optional={
        "data": st.lists(numbers, max_size=12) | st.lists(st.lists(numbers, max_size=4), max_size=4) | json_values,
        "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-5, 2**40) | json_scalars}),
    },
)
infer_body = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3) | json_values},
    optional={
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=4)}), max_size=2) | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data_output"]), json_scalars),
        "id": json_scalars,
    },
)

#: Printable ASCII that stays inside one path segment (clients refuse control characters in URLs).
URL_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%\\")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text}"
    if r.status_code >= 400:
        assert isinstance(r.json()["error"], str) and r.json()["error"]


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> Any:
    with httpx.Client(base_url=daemon.url, timeout=10) as c:
        yield c
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died under fuzzing"


@FUZZ
@given(body=infer_body, binary_tail=st.binary(max_size=40), header_len=st.none() | st.integers(-3, 400))
def test_fuzzed_infer_requests_never_give_5xx(
    client: httpx.Client, body: Any, binary_tail: bytes, header_len: Any
) -> None:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if header_len is not None:
        headers["Inference-Header-Content-Length"] = str(header_len)
        raw += binary_tail
    check(client.post("/v2/models/digits/infer", content=raw, headers=headers))


@FUZZ
@given(body=json_values | st.fixed_dictionaries({"inputs": json_values}) | st.fixed_dictionaries({"x": json_values}))
def test_fuzzed_predict_requests_never_give_5xx(client: httpx.Client, body: Any) -> None:
    check(client.post("/predict/digits", content=json.dumps(body), headers={"Content-Type": "application/json"}))


@FUZZ
@given(
    model=st.sampled_from(["digits", "colors"]) | st.text(URL_CHARS, min_size=1, max_size=8),
    version=st.none() | st.text(URL_CHARS, min_size=1, max_size=5),
    suffix=st.sampled_from(["", "/ready", "/infer"]),
    raw=st.binary(max_size=64),
)
def test_fuzzed_paths_and_raw_bodies_never_give_5xx(
    client: httpx.Client, model: str, version: str | None, suffix: str, raw: bytes
) -> None:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + suffix
    check(client.post(path, content=raw) if suffix == "/infer" else client.get(path))
    check(client.post(f"/predict/{model}", content=raw))
    check(client.post(f"/predict/{model}", files={"file": ("f", raw)}))
