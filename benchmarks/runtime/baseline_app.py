"""The baseline: a FastAPI + onnxruntime server as tutorials write it (one global session, a pydantic body,
``session.run`` in the request handler, no queue, no batching, no limits).

Run: ``python -m benchmarks.runtime.baseline_app MODEL.onnx PORT`` (binds 127.0.0.1). It answers the same
``POST /predict/{model}`` body as ``edgectl serve`` (``{"inputs": [...]}``), so both take the very same load.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
session: Any = None
input_name = ""


class PredictRequest(BaseModel):
    inputs: list[Any]


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict/{model}")
async def predict(model: str, request: PredictRequest) -> dict[str, Any]:
    x = np.array(request.inputs, dtype=np.float32)
    outputs = session.run(None, {input_name: x})
    return {"outputs": outputs[0].tolist()}


def main(argv: list[str]) -> None:
    global session, input_name
    session = ort.InferenceSession(argv[0], providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    uvicorn.run(app, host="127.0.0.1", port=int(argv[1]), log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
