"""One error vocabulary for the server and the SDK.

The server raises these from services; its single handler turns them into
``{"error": {"code", "message", "details"}}`` with ``status``. The SDK turns that JSON
back into the same class, so ``except podstack.errors.NotFound`` works identically in
embedded mode and against a remote server.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PodstackError(Exception):
    """Base of every error the product raises on purpose."""

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadRequest(PodstackError):
    code = "BAD_REQUEST"
    status = 400


class Unauthenticated(PodstackError):
    code = "UNAUTHENTICATED"
    status = 401


class PermissionDenied(PodstackError):
    code = "PERMISSION_DENIED"
    status = 403


class NotFound(PodstackError):
    code = "NOT_FOUND"
    status = 404


class Conflict(PodstackError):
    code = "CONFLICT"
    status = 409


class PayloadTooLarge(PodstackError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class ValidationFailed(PodstackError):
    code = "VALIDATION_ERROR"
    status = 422


class ServiceUnavailable(PodstackError):
    code = "SERVICE_UNAVAILABLE"
    status = 503


class TransportError(PodstackError):
    """The SDK could not reach the server at all (connection refused, DNS, timeout)."""

    code = "TRANSPORT_ERROR"
    status = 0


class IntegrityError(PodstackError):
    """Downloaded bytes did not match the recorded sha256."""

    code = "INTEGRITY_ERROR"
    status = 500


class ChecksumMismatch(BadRequest):
    """An upload's bytes did not match the sha256 the sender declared; nothing was stored."""

    code = "CHECKSUM_MISMATCH"
    status = 400


# The generic class for each HTTP status: what a bare status means on either side (the
# server's answer to framework errors such as a 404 route, the SDK's fallback for a body that
# is not the error JSON). Each status is written once, on its class.
BY_STATUS: dict[int, type[PodstackError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        Conflict,
        PayloadTooLarge,
        ValidationFailed,
        ServiceUnavailable,
    )
}

_BY_CODE: dict[str, type[PodstackError]] = {
    cls.code: cls
    for cls in (
        *BY_STATUS.values(),
        TransportError,
        IntegrityError,
        ChecksumMismatch,
    )
}


def register_error(cls: type[PodstackError]) -> type[PodstackError]:
    """Class decorator for capability-specific errors (e.g. APPROVAL_REQUIRED)."""
    _BY_CODE[cls.code] = cls
    return cls


@register_error
class ApprovalRequired(PodstackError):
    """A transition into a gated stage was not applied: it is waiting in an approval request
    (``request_id``; follow it with ``client.get_approval_request(request_id)``). Raised by
    ``transition_model_version_stage``, so a script never carries on as if it had happened."""

    code = "APPROVAL_REQUIRED"
    status = 202

    @property
    def request_id(self) -> str | None:
        value = self.details.get("request_id")
        return str(value) if value is not None else None


@register_error
class ApprovalPending(ApprovalRequired, Conflict):
    """A change to what is served (deploying or rolling a production endpoint, moving an alias
    a policy gates or a production endpoint follows) was not made: an approval request was
    opened for it (``request_id``) and it is carried out once approved. A 409, so a script
    that did not expect review stops; ``except ApprovalRequired`` catches it too."""

    code = "APPROVAL_PENDING"
    status = 409
    # The request opened for the change is committed although the change itself is refused
    # (podstack.server.db.session commits instead of rolling back for such errors).
    keep_writes = True


@register_error
class GateFailed(Conflict):
    """A version does not meet its approval policy's metric gates (``details["gates"]``)."""

    code = "GATE_FAILED"
    status = 409


class DeploymentFailed(PodstackError):
    """A deployment (or an update of one) could not be brought up; ``details`` has the reason
    and, for a failed update, the version that is still serving. Raised by the SDK while it
    waits for a deployment (``status`` 0: no HTTP answer carries it)."""

    code = "DEPLOYMENT_FAILED"
    status = 0


@register_error
class SignatureInvalid(ValidationFailed):
    """A model version's signature does not verify, or does not cover the files as they are
    (``details.files`` names each file that differs). Raised by the SDK when it verifies a
    download, and by the server when a deployment or a policy requires a valid signature."""

    code = "SIGNATURE_INVALID"
    status = 422


def error_from_payload(status: int, payload: Any) -> PodstackError:
    """Rebuild the typed exception from a server error body (SDK side)."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        err = payload["error"]
        code = str(err.get("code", "INTERNAL"))
        cls = _BY_CODE.get(code)
        message = str(err.get("message", ""))
        details = err.get("details") or {}
        if cls is None:
            generic = type(code.title().replace("_", ""), (PodstackError,), {})
            generic.code = code  # type: ignore[misc]
            generic.status = status  # type: ignore[misc]
            return generic(message, details)
        return cls(message, details)
    fallback = BY_STATUS.get(status, PodstackError)
    return fallback(f"HTTP {status}: {str(payload)[:500]}")


__all__ = [
    "ApprovalPending",
    "ApprovalRequired",
    "BadRequest",
    "ChecksumMismatch",
    "Conflict",
    "DeploymentFailed",
    "GateFailed",
    "IntegrityError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PodstackError",
    "ServiceUnavailable",
    "SignatureInvalid",
    "TransportError",
    "Unauthenticated",
    "ValidationFailed",
    "error_from_payload",
    "register_error",
]
