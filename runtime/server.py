"""The HTTP API: Open Inference Protocol (KServe v2 REST) with the binary tensor and model repository extensions,
``POST /predict/{model}`` for people, ``/metrics`` for Prometheus, and OpenAPI docs at ``/docs``.

Handlers stay thin: decoding lives in :mod:`.protocol` / :mod:`.preprocess`, serving in :mod:`.manager`. Every
error is a 4xx (or 429/503 with ``Retry-After``) with ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgectl import __version__
from edgectl.errors import EdgectlError, OverloadedError, RequestError, TransientError
from edgectl.log import get_logger

from .batching import ModelWorker
from .loader import LoadedModel
from .manager import ModelManager
from .metrics import RuntimeMetrics
from .preprocess import check_inputs, json_inputs, preprocess_image
from .protocol import (
    InferRequest,
    check_finite,
    decode_infer_request,
    encode_infer_response,
    parse_json,
    v2_datatype,
)
from .security import ASGIApp, KeyRing, build_middleware_stack

log = get_logger("edgectl.runtime.http")

INFER_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string", "example": "FP32"},
                                    "data": {"type": "array", "items": {}},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                        "outputs": {"type": "array", "items": {"type": "object"}},
                        "parameters": {"type": "object"},
                    },
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Binary tensor extension: JSON header of Inference-Header-Content-Length bytes, "
                "then the raw tensors.",
            },
        },
    }
}


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    max_body_bytes: int
    request_timeout_s: float
    rate_limit: float
    rate_burst: float


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _status_for(exc: EdgectlError) -> int:
    if isinstance(exc, RequestError):
        return exc.status
    return 503 if isinstance(exc, TransientError) else 400


def _metadata(worker: ModelWorker) -> dict[str, Any]:
    model = worker.model

    def tensors(specs: list[Any]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": v2_datatype(t.dtype), "shape": list(t.shape)} for t in specs]

    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": f"{model.session.backend}_{model.artifact.format}",
        "inputs": tensors(model.inputs),
        "outputs": tensors(model.outputs),
        "parameters": {
            "artifact": model.artifact.path,
            "precision": model.artifact.precision,
            "preprocessing": model.manifest.preprocessing,
            "max_batch_size": worker.config.max_batch_size if model.batchable else 0,
        },
    }


def _version(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise RequestError(f"Model version must be a positive integer, got {raw!r}.", status=404)
    return int(raw)


def create_app(
    manager: ModelManager,
    metrics: RuntimeMetrics,
    *,
    limits: HttpLimits,
    keys: KeyRing | None,
    allow_non_finite: Callable[[LoadedModel], bool] = lambda m: bool(m.manifest.target.get("allow_non_finite")),
) -> tuple[FastAPI, ASGIApp]:
    """Build the FastAPI application and the middleware-wrapped ASGI app to serve. Returns (app, asgi).

    ``allow_non_finite`` says whether a model accepts NaN/Inf inputs (default: the manifest's
    ``target.allow_non_finite``)."""
    # Every element takes at least one byte of body, so a larger declared tensor cannot be honest: refuse it before
    # allocating anything.
    max_elements = max(1, limits.max_body_bytes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        yield
        await manager.stop()

    app = FastAPI(
        title="edgectl serve",
        version=__version__,
        summary="Open Inference Protocol (KServe v2) server for edgectl bundles.",
        lifespan=lifespan,
    )

    @app.exception_handler(EdgectlError)
    async def edgectl_error(_: Request, exc: EdgectlError) -> JSONResponse:
        headers = {"retry-after": str(exc.retry_after_s)} if isinstance(exc, OverloadedError) else None
        return _error(_status_for(exc), str(exc), headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, never a user mistake: logged with its traceback, answered in the API's error shape.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "Internal error; the daemon log has the details.")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"Invalid request: {exc.errors()}")

    async def run(name: str, version: int | None, prepare: Callable[[LoadedModel], dict[str, np.ndarray]]) -> Any:
        start = time.perf_counter()
        outcome, served = "error", version
        try:
            model, outputs = await asyncio.wait_for(manager.infer(name, version, prepare), limits.request_timeout_s)
            served, outcome = model.version, "success"
            return model, outputs
        except TimeoutError:
            outcome = "timeout"
            raise OverloadedError(
                f"Model '{name}' did not answer within {limits.request_timeout_s:g}s.", status=503, retry_after_s=1
            ) from None
        except OverloadedError as exc:
            outcome = "overloaded" if exc.status == 429 else "unavailable"
            raise
        except RequestError as exc:
            outcome = "not_found" if exc.status == 404 else "bad_request"
            raise
        finally:
            # Label with what serves, never with what the client sent: arbitrary labels would grow without bound.
            known = manager.models.get(name)
            if known is not None:
                v = str(served if outcome == "success" else known.version or "")
                metrics.requests.inc(name, v, outcome)
                metrics.latency.observe(name, v, value=time.perf_counter() - start)

    @app.get("/v2", tags=["server"])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "edgectl", "version": __version__, "extensions": ["binary_tensor_data", "model_repository"]}

    @app.get("/v2/health/live", tags=["server"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["server"])
    async def ready() -> Response:
        ok = manager.ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2/models/{model}", tags=["models"])
    @app.get("/v2/models/{model}/versions/{version}", tags=["models"])
    async def model_metadata(model: str, version: str | None = None) -> dict[str, Any]:
        return _metadata(manager.get(model, _version(version)))

    @app.get("/v2/models/{model}/ready", tags=["models"])
    @app.get("/v2/models/{model}/versions/{version}/ready", tags=["models"])
    async def model_ready(model: str, version: str | None = None) -> Response:
        try:
            worker = manager.get(model, _version(version))
        except OverloadedError:
            return JSONResponse({"name": model, "ready": False}, status_code=503)
        return JSONResponse({"name": model, "version": str(worker.model.version), "ready": True})

    @app.post("/v2/models/{model}/infer", tags=["inference"], openapi_extra=INFER_BODY_DOC)
    @app.post("/v2/models/{model}/versions/{version}/infer", tags=["inference"], openapi_extra=INFER_BODY_DOC)
    async def infer(request: Request, model: str, version: str | None = None) -> Response:
        with manager.admit(model):
            body = await request.body()
            header_length = request.headers.get("inference-header-content-length")
            decoded: list[InferRequest] = []

            def prepare(m: LoadedModel) -> dict[str, np.ndarray]:
                req = decode_infer_request(body, m.inputs, header_length=header_length, max_elements=max_elements)
                if not allow_non_finite(m):
                    check_finite(req.inputs)
                decoded[:] = [req]
                return req.inputs

            served, outputs = await run(model, _version(version), prepare)
            content, headers = encode_infer_response(decoded[0], outputs, model=served.name, version=served.version)
        return Response(content=content, headers=headers)

    @app.post("/predict/{model}", tags=["inference"])
    async def predict(request: Request, model: str) -> Response:
        """Plain JSON (``{"inputs": [...]}`` or ``{"<input>": [...]}``) or a multipart image upload (``file``)."""
        with manager.admit(model):
            return await _predict(request, model)

    async def _predict(request: Request, model: str) -> Response:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=8) as form:
                upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
                if upload is None:
                    raise RequestError("The multipart body holds no file; send the image as a file field.")
                image = await upload.read()

            def prepare(m: LoadedModel) -> dict[str, np.ndarray]:
                prep = m.manifest.preprocessing or {}
                if prep.get("kind") != "image" or len(m.inputs) != 1:
                    raise RequestError(f"Model '{m.name}' is not an image model; send JSON instead.", status=415)
                return {m.inputs[0].name: preprocess_image(image, m.inputs[0], prep)}
        else:
            doc = parse_json(await request.body(), expected='{"inputs": [...]}')

            def prepare(m: LoadedModel) -> dict[str, np.ndarray]:
                inputs = json_inputs(doc, m.inputs)
                check_inputs(inputs, m.inputs, max_elements)
                if not allow_non_finite(m):
                    check_finite(inputs)
                return inputs

        served, outputs = await run(model, None, prepare)
        result: dict[str, Any] = {
            "model_name": served.name,
            "model_version": str(served.version),
            "outputs": {k: v.tolist() for k, v in outputs.items()},
        }
        argmax = {k: v.argmax(axis=1).tolist() for k, v in outputs.items() if v.ndim == 2 and v.dtype.kind == "f"}
        if argmax:
            result["argmax"] = argmax
        # A model may answer NaN/Inf (e.g. overflow on extreme inputs): sent as the NaN / Infinity tokens that Python
        # and most JSON readers accept, as /infer does, rather than failing the request.
        return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")

    @app.get("/v2/repository/index", tags=["repository"])
    @app.post("/v2/repository/index", tags=["repository"])
    async def repository_index() -> list[dict[str, str]]:
        return manager.index()

    @app.post("/v2/repository/models/{model}/load", tags=["repository"])
    async def repository_load(model: str) -> dict[str, Any]:
        if model not in manager.store.models():
            raise RequestError(
                f"Model '{model}' is not in the store; install it with 'edgectl models install'.", status=404
            )
        served = await manager.load(model)
        return {"name": model, "version": str(served.version), "state": served.state.value}

    @app.post("/v2/repository/models/{model}/unload", tags=["repository"])
    async def repository_unload(model: str) -> dict[str, Any]:
        await manager.unload(model)
        return {"name": model, "state": "UNLOADED"}

    @app.get("/metrics", tags=["server"])
    async def prometheus() -> Response:
        return Response(metrics.registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    asgi = build_middleware_stack(
        app,
        keys=keys,
        rate=limits.rate_limit,
        burst=limits.rate_burst or max(1.0, limits.rate_limit),
        max_body_bytes=limits.max_body_bytes,
        refused=metrics.http_refused,
    )
    return app, asgi
