"""Signing keys (every public key that ever signed, so old signatures stay verifiable after a
rotation) and the signatures of model versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class SigningKey(Base):
    __tablename__ = "signing_keys"

    # "sha256:<hex>" of the public key's DER SubjectPublicKeyInfo: the same key always has the
    # same id, wherever it was registered.
    key_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    public_pem: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(255))  # "server" or the user who attached it
    kind: Mapped[str] = mapped_column(String(16))  # server | user
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VersionSignature(Base):
    __tablename__ = "version_signatures"
    __table_args__ = (Index("ix_version_signatures_version", "version_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    key_id: Mapped[str] = mapped_column(ForeignKey("signing_keys.key_id"))
    kind: Mapped[str] = mapped_column(String(16))  # server | user
    signer: Mapped[str] = mapped_column(String(255))
    # The OpenSSF model-signing bundle (Sigstore bundle JSON: a DSSE envelope over the
    # in-toto statement listing every file with its sha256), exactly as `model_signing
    # verify` reads it from `model.sig`.
    bundle: Mapped[str] = mapped_column(Text)
    # The provenance statement (in-toto, JSON) the server signed alongside; user signatures
    # carry none.
    statement: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
