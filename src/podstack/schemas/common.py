"""Base model, pagination envelope and shared validated field types."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")


class Schema(BaseModel):
    """Every wire object: built from ORM rows, NaN/inf sent as strings (JSON has no NaN)."""

    model_config = ConfigDict(
        from_attributes=True, ser_json_inf_nan="strings", populate_by_name=True
    )


class Input(Schema):
    """Request bodies: unknown fields are an error, so typos are not silently ignored."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Page(Schema, Generic[T]):
    items: list[T]
    next_page_token: str | None = None


# Names shared by experiments, params, metrics, tags.
Key = Annotated[
    str, StringConstraints(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_\-./: ]+$")
]
Label = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:/ ]+$")
]
Description = Annotated[str, StringConstraints(max_length=20_000)]

PageLimit = Annotated[int, Field(ge=1, le=1000)]


def dump(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    return obj


class ErrorBody(Schema):
    code: str = Field(description="Stable machine-readable code, e.g. NOT_FOUND.")
    message: str = Field(description="What went wrong and how to fix it.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(Schema):
    error: ErrorBody


_ERROR_DESCRIPTIONS = {
    400: "Malformed request (invalid JSON, bad page token).",
    401: "Missing, invalid, expired or revoked credentials.",
    403: "Authenticated, but the role or token scope does not allow this.",
    404: "The named resource does not exist.",
    409: "Conflicts with the current state (duplicate, immutable value, ended run, …).",
    413: "Body larger than the configured limit (stated in the message).",
    422: "Validation failed; details.errors lists each field.",
    503: "Database unavailable; retry after the Retry-After delay.",
}

# Declared on every API route so clients (and schema checkers) know the error envelope.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in _ERROR_DESCRIPTIONS.items()
}
