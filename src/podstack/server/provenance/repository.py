"""Queries of signing keys and version signatures."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from podstack.server.provenance.models import SigningKey, VersionSignature


def get_key(s: Session, key_id: str) -> SigningKey | None:
    return s.get(SigningKey, key_id)


def add_key(s: Session, key: SigningKey) -> None:
    s.add(key)
    s.flush()


def list_keys(s: Session) -> Sequence[SigningKey]:
    return s.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.key_id)).all()


def keys_by_id(s: Session, ids: set[str]) -> dict[str, SigningKey]:
    if not ids:
        return {}
    rows = s.scalars(select(SigningKey).where(SigningKey.key_id.in_(ids)))
    return {k.key_id: k for k in rows}


def add_signature(s: Session, sig: VersionSignature) -> None:
    s.add(sig)
    s.flush()


def signatures_of(s: Session, version_id: int) -> Sequence[VersionSignature]:
    q = (
        select(VersionSignature)
        .where(VersionSignature.version_id == version_id)
        .order_by(VersionSignature.id)
    )
    return s.scalars(q).all()


def all_signatures(s: Session, after_id: int, limit: int) -> Sequence[VersionSignature]:
    q = (
        select(VersionSignature)
        .where(VersionSignature.id > after_id)
        .order_by(VersionSignature.id)
        .limit(limit)
    )
    return s.scalars(q).all()
