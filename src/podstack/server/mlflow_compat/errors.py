"""MLflow's error JSON for the MLflow-compatible paths, and only for them.

MLflow answers ``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "..."}`` with the status
of ``mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS``; its client reads ``error_code`` to decide
what happened (``RestException``) and retries 429/5xx answers. Podstack's own API keeps its
``{"error": {...}}`` shape: the translation happens in ``MlflowRoute``, the route class of
every MLflow router, so it covers exactly those routes (authentication failures raised by the
role dependencies included) and nothing else.

Services keep raising ``podstack.errors``; ``from_podstack`` maps each class to MLflow's code.
An endpoint that needs a specific MLflow code (a changed param value is
``INVALID_PARAMETER_VALUE`` in MLflow, a ``Conflict`` here) raises ``MlflowError`` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException

from podstack.errors import (
    ApprovalRequired,
    BadRequest,
    Conflict,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PodstackError,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)

log = logging.getLogger("podstack.server.mlflow")

# mlflow/exceptions.py ERROR_CODE_TO_HTTP_STATUS (mlflow 3.17), for the codes we answer with.
STATUS: dict[str, int] = {
    "INTERNAL_ERROR": 500,
    "INVALID_STATE": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
    "RESOURCE_EXHAUSTED": 429,
    "RESOURCE_CONFLICT": 409,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_PARAMETER_VALUE": 400,
}


class MlflowError(Exception):
    """An answer in MLflow's vocabulary (``error_code`` one of ``STATUS``)."""

    def __init__(self, error_code: str, message: str) -> None:
        if error_code not in STATUS:
            raise ValueError(f"unknown MLflow error code {error_code!r}")
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.error_code]


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def not_found(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)


def not_implemented(message: str) -> MlflowError:
    return MlflowError("NOT_IMPLEMENTED", message)


def from_podstack(exc: PodstackError) -> MlflowError:
    """The MLflow code for a Podstack error (most specific class first)."""
    message = exc.message
    if isinstance(exc, ApprovalRequired):
        # A gated change waits for review (202/409 on /api/v1): MLflow has no "accepted", and a
        # script must not carry on as if it had happened, so it is a conflict naming the request.
        rid = exc.details.get("request_id")
        suffix = f" (approval request {rid})" if rid and str(rid) not in message else ""
        return MlflowError("RESOURCE_CONFLICT", message + suffix)
    if isinstance(exc, NotFound):
        return MlflowError("RESOURCE_DOES_NOT_EXIST", message)
    if isinstance(exc, Conflict):
        # "X already exists" is MLflow's RESOURCE_ALREADY_EXISTS (400); other conflicts (a
        # finished run, a version in use) are state conflicts, 409 -- never a 5xx, which the
        # MLflow client would retry for minutes.
        code = "RESOURCE_ALREADY_EXISTS" if "already exists" in message else "RESOURCE_CONFLICT"
        return MlflowError(code, message)
    if isinstance(exc, (ValidationFailed, BadRequest)):
        return MlflowError("INVALID_PARAMETER_VALUE", message)
    if isinstance(exc, PermissionDenied):
        return MlflowError("PERMISSION_DENIED", message)
    if isinstance(exc, Unauthenticated):
        return MlflowError("UNAUTHENTICATED", message)
    if isinstance(exc, PayloadTooLarge):
        return MlflowError("INVALID_PARAMETER_VALUE", message)
    if isinstance(exc, ServiceUnavailable):
        return MlflowError("TEMPORARILY_UNAVAILABLE", message)
    if isinstance(exc, IntegrityError):
        return MlflowError("DATA_LOSS", message)
    return MlflowError("INTERNAL_ERROR", message)


def error_response(err: MlflowError) -> JSONResponse:
    headers = {"Retry-After": "2"} if err.status == 503 else None
    return JSONResponse(
        {"error_code": err.error_code, "message": err.message},
        status_code=err.status,
        headers=headers,
    )


def _validation_message(exc: RequestValidationError) -> str:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return "Request body is not valid JSON."
    if not errors:
        return "Invalid request."
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    return f"Invalid value for parameter '{where or 'request'}': {first.get('msg', 'invalid')}"


def translate(exc: Exception) -> MlflowError | None:
    """The MLflow answer for an exception raised while serving an MLflow route."""
    if isinstance(exc, MlflowError):
        return exc
    if isinstance(exc, PodstackError):
        return from_podstack(exc)
    if isinstance(exc, RequestValidationError):
        return invalid(_validation_message(exc))
    if isinstance(exc, PydanticValidationError):
        # A Podstack schema built from MLflow's input refused it (a key with a newline, ...).
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return invalid(f"Invalid value for {where or 'request'}: {first.get('msg', 'invalid')}")
    if isinstance(exc, HTTPException):
        code = {
            400: "BAD_REQUEST",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "ENDPOINT_NOT_FOUND",
            405: "ENDPOINT_NOT_FOUND",
            503: "TEMPORARILY_UNAVAILABLE",
        }.get(exc.status_code, "BAD_REQUEST" if exc.status_code < 500 else "INTERNAL_ERROR")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
        return MlflowError(code, detail)
    return None


class MlflowRoute(APIRoute):
    """Route class of every MLflow-compatible router: errors leave as MLflow's JSON.

    Wrapping the route handler (rather than an app-wide exception handler) limits the
    translation to these routes; the wrapped handler also resolves the dependencies, so an
    unauthenticated or under-privileged caller gets MLflow's ``UNAUTHENTICATED`` (401) /
    ``PERMISSION_DENIED`` (403) too."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await inner(request)
            except Exception as exc:
                err = translate(exc)
                if err is None:
                    # Never a traceback to the caller; the operator gets it in the log.
                    log.exception("unhandled error on %s %s", request.method, request.url.path)
                    err = MlflowError("INTERNAL_ERROR", "Internal server error.")
                return error_response(err)

        return handler
