"""The one error handler: every failure leaves the server as the DESIGN error JSON."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from podstack.errors import BY_STATUS, PodstackError

log = logging.getLogger("podstack.server")

# The code for a status the framework answers by itself (unknown route, wrong method, ...):
# the error classes' own codes, plus the statuses no service raises.
_STATUS_CODES = {
    **{status: cls.code for status, cls in BY_STATUS.items()},
    405: "METHOD_NOT_ALLOWED",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}},
        status_code=status,
        headers=headers,
    )


def _clean_validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"field": ".".join(loc), "message": e.get("msg", ""), "type": e.get("type")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PodstackError)
    async def _podstack(_: Request, exc: PodstackError) -> JSONResponse:
        headers = {"Retry-After": "2"} if exc.status == 503 else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(
                400,
                "BAD_REQUEST",
                "Request body is not valid JSON.",
                {"errors": _clean_validation_errors(errors)},
            )
        cleaned = _clean_validation_errors(errors)
        first = cleaned[0] if cleaned else {"field": "", "message": "invalid"}
        where = first["field"].removeprefix("body.") or "request"
        return error_response(
            422, "VALIDATION_ERROR", f"Invalid {where}: {first['message']}", {"errors": cleaned}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
        if exc.status_code == 404 and message == "Not Found":
            message = "No such endpoint."
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never leak a traceback to the caller; log it with the request line for operators.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "INTERNAL", "Internal server error.")
