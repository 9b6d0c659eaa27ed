"""Signatures and provenance of model versions (wire shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from podstack.schemas.common import Input, Schema


class SigningKey(Schema):
    key_id: str
    public_pem: str
    owner: str
    kind: Literal["server", "user"]
    created_at: datetime
    current: bool = False  # the key the server signs new versions with


class SignatureCheck(Schema):
    """One signature of a version, checked by the server against the version's manifest."""

    id: int
    key_id: str
    kind: Literal["server", "user"]
    signer: str
    created_at: datetime
    valid: bool
    problem: str | None = None
    files: list[str] = Field(default_factory=list)  # files that do not match, when invalid
    bundle: str  # the model_signing bundle (write it as model.sig next to the files)
    statement: dict[str, Any] | None = None  # provenance statement (server signatures)
    statement_envelope: dict[str, Any] | None = None  # its DSSE envelope


class VersionSignatures(Schema):
    model_name: str
    version: int
    signatures: list[SignatureCheck]


class SignatureIn(Input):
    bundle: str = Field(min_length=2, max_length=1_000_000)
    public_key: str = Field(min_length=32, max_length=10_000)
