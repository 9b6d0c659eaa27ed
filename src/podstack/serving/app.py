"""The inference server: one model behind the Open Inference Protocol (KServe V2) REST API.

    GET  /v2                          server metadata
    GET  /v2/health/live              200 while the process runs
    GET  /v2/health/ready             200 once the model is loaded
    GET  /v2/models/{name}            model metadata (inputs/outputs with datatypes and shapes)
    GET  /v2/models/{name}/ready      200 when that model is ready
    POST /v2/models/{name}/infer      inference

Errors use the protocol's shape, ``{"error": "<message>"}``. The model is the deployment's
endpoint name; ``/v2/models/{name}/versions/{v}/...`` is accepted for the served version.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import podstack
from podstack.serving import runtime
from podstack.serving.protocol import (
    ProtocolError,
    binary_outputs,
    decode_inputs,
    encode_tensor,
)
from podstack.serving.protocol import requested_outputs as _requested

# The binary tensor data extension (used by tritonclient by default): JSON header length.
HEADER_LENGTH = "inference-header-content-length"
ENV_MODEL_DIR = "PODSTACK_SERVING_MODEL_DIR"
ENV_NAME = "PODSTACK_SERVING_NAME"
ENV_VERSION = "PODSTACK_SERVING_VERSION"
ENV_INSTANCE = "PODSTACK_SERVING_INSTANCE"
ENV_TRUSTED = "PODSTACK_SERVING_TRUSTED"


@dataclass
class ServedModel:
    name: str
    version: str
    instance: str
    model: runtime.LoadedModel


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(served: ServedModel) -> Starlette:
    model = served.model

    def check_name(request: Request) -> JSONResponse | None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != served.name or (version is not None and version != served.version):
            which = f"{name!r}" + (f" version {version!r}" if version is not None else "")
            return _error(
                f"Unknown model {which}; this server serves {served.name!r} version "
                f"{served.version!r}.",
                404,
            )
        return None

    async def server_meta(_: Request) -> Response:
        return JSONResponse(
            {
                "name": "podstack-inference",
                "version": podstack.__version__,
                "extensions": ["binary_tensor_data"],
                "instance": served.instance,
            }
        )

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        return JSONResponse({"ready": True})

    async def model_meta(request: Request) -> Response:
        if (err := check_name(request)) is not None:
            return err
        return JSONResponse(
            {
                "name": served.name,
                "versions": [served.version],
                "platform": model.platform,
                "inputs": [t.to_v2() for t in model.inputs],
                "outputs": [t.to_v2() for t in model.outputs],
            }
        )

    async def model_ready(request: Request) -> Response:
        if (err := check_name(request)) is not None:
            return err
        return JSONResponse({"name": served.name, "ready": True})

    async def infer(request: Request) -> Response:
        if (err := check_name(request)) is not None:
            return err
        raw = await request.body()
        header_len = request.headers.get(HEADER_LENGTH)
        try:
            cut = int(header_len) if header_len else len(raw)
            body = json.loads(raw[:cut])
        except ValueError:
            return _error("Request body is not valid JSON.")
        try:
            feed = decode_inputs(body, model.inputs, raw[cut:])
            names = _requested(body, [o.name for o in model.outputs])
            as_binary = binary_outputs(body) if isinstance(body, dict) else set()
        except ProtocolError as exc:
            return _error(exc.message, exc.status)
        try:
            result = await run_in_threadpool(model.predict, feed)
        except Exception as exc:  # the model rejected the values (e.g. wrong feature count)
            return _error(f"Inference failed: {exc}")
        names = [n for n in names if n in result] or list(result)
        try:
            outputs = [encode_tensor(n, result[n]) for n in names]
        except runtime.LoadError as exc:
            return _error(str(exc), 500)
        blobs: list[bytes] = []
        for o, n in zip(outputs, names, strict=True):
            if (as_binary is True or n in as_binary) and o["datatype"] != "BYTES":
                data = result[n].astype(runtime.numpy_dtype(o["datatype"])).tobytes()
                o.pop("data")
                o["parameters"] = {"binary_data_size": len(data)}
                blobs.append(data)
        doc: dict[str, Any] = {
            "model_name": served.name,
            "model_version": served.version,
            "id": str(body.get("id") or uuid.uuid4()),
            "outputs": outputs,
        }
        if not blobs:
            return JSONResponse(doc)
        head = json.dumps(doc).encode()
        return Response(
            head + b"".join(blobs),
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(len(head))},
        )

    routes = [
        Route("/v2", server_meta, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", model_meta, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", model_meta, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]

    async def not_found(_: Request, exc: Exception) -> Response:
        return _error("No such route; see /v2/models/<name>/infer.", 404)

    async def bad_method(_: Request, exc: Exception) -> Response:
        return _error("Method not allowed.", 405)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method})


def load_served(
    model_dir: Path, name: str, version: str, instance: str, trusted: bool
) -> ServedModel:
    loaded, _ = runtime.load(model_dir, trusted=trusted)
    return ServedModel(name=name, version=version, instance=instance, model=loaded)


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes (``--workers`` > 1)."""
    served = load_served(
        Path(os.environ[ENV_MODEL_DIR]),
        os.environ[ENV_NAME],
        os.environ[ENV_VERSION],
        os.environ.get(ENV_INSTANCE, ""),
        os.environ.get(ENV_TRUSTED) == "1",
    )
    return create_app(served)
