"""Registered models, versions (with their immutable file snapshots), stages, aliases, tags.

History tables (``stage_transitions``, ``alias_history``) keep the version *number* next to
the nullable version row id, so "which version was in Production on date X" still has an
answer after that version was deleted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, UTCDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY columns; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer, "sqlite")


class RegisteredModel(Base):
    __tablename__ = "registered_models"
    __table_args__ = (
        # "Sort by last update" with keyset pagination on (updated_at, id).
        Index("ix_registered_models_updated", "updated_at", "id"),
        # Case-insensitive name-prefix search: "starts with q" is a range of this index
        # (migration 0007; "C" order on PostgreSQL, where only code point order makes a
        # prefix one contiguous range).
        Index("ix_registered_models_lower_name", text("lower(name)"), "name").ddl_if(
            dialect="sqlite"
        ),
        Index(
            "ix_registered_models_lower_name",
            text('(lower(name) COLLATE "C")'),
            text('(name COLLATE "C")'),
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Unique index doubles as the "sort by name" index (keyset on name; names are unique).
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Indexed: the owner is who holds MANAGE, and "what may this user read" starts from it
    # (permissions/repository.readable_ids_query).
    created_by: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The number the next version gets. Only ever increases (under the row lock), so numbers
    # are never reused after a delete, and a failed create rolls the increment back.
    next_version: Mapped[int] = mapped_column(Integer, default=1)


class ModelLabel(Base):
    """A model's labels ("tags" in the seed's ``register_model``), one row each."""

    __tablename__ = "model_labels"
    __table_args__ = (
        # Label filter: find models by label without scanning all models.
        Index("ix_model_labels_label_model", "label", "model_id"),
        # Label search in name order: a page is a range of this index that stops after the
        # page's last row, instead of a walk of every model's name probing for the label.
        Index("ix_model_labels_label_name", "label", "model_name"),
    )

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Copy of registered_models.name (same type and collation, so it sorts exactly as the
    # name does), written with the label by ``repository.replace_labels``. Models are never
    # renamed; a rename would have to update this column too.
    model_name: Mapped[str] = mapped_column(String(128))


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        # Stage filter on the model list ("has a version in Production") and per-model
        # "versions in stage S".
        Index("ix_model_versions_stage_model", "stage", "model_id"),
        Index("ix_model_versions_model_stage", "model_id", "stage"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # RESTRICT backs the run-delete guard: a run that backs a version cannot disappear.
    source_run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.id", ondelete="RESTRICT"), index=True
    )
    artifact_path: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(16), default="None")
    # When the version entered its current stage: "the Production version" is the one that
    # got there most recently.
    stage_updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Fine-tuning lineage: the version this one was trained from (any model).
    parent_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), index=True
    )


class VersionFile(Base):
    """Immutable snapshot of a version's files. Paths are relative to the version's
    ``artifact_path`` (a single-file artifact is its file name); bytes live once in the
    content-addressed store, so registering copies nothing."""

    __tablename__ = "version_files"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # Indexed for garbage collection ("is this blob still referenced?").
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class VersionTag(Base):
    __tablename__ = "version_tags"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class VersionMetric(Base):
    """Validation metrics logged on the version itself (not on its training run).
    ``value`` NULL encodes NaN, as in tracking."""

    __tablename__ = "version_metrics"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)
    logged_by: Mapped[str | None] = mapped_column(String(64))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StageTransition(Base):
    __tablename__ = "stage_transitions"
    __table_args__ = (
        Index("ix_stage_transitions_model_at", "model_id", "at", "id"),
        Index("ix_stage_transitions_version_at", "version_id", "at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    version: Mapped[int] = mapped_column(Integer)
    from_stage: Mapped[str] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)
    # Set when the transition completed an approval request (approvals capability).
    request_id: Mapped[str | None] = mapped_column(String(64))


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (Index("ix_model_aliases_version", "version_id"),)

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AliasHistory(Base):
    """Every alias move. ``kind``: set | rollback | delete (``version`` NULL for delete)."""

    __tablename__ = "alias_history"
    __table_args__ = (
        Index("ix_alias_history_model_alias_at", "model_id", "alias", "at", "id"),
        Index("ix_alias_history_model_at", "model_id", "at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int | None] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegisteredModelTag(Base):
    """A model's key-value tags (MLflow's registered-model tags; migration 0016). Kept apart
    from labels (``ModelLabel``, plain strings): a label is a tag without a value, and the
    MLflow API shows labels as tags with an empty value (see ``model_tags``)."""

    __tablename__ = "registered_model_tags"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class VersionOrigin(Base):
    """Where a version registered through the MLflow API said it came from: the ``source``
    URI the client gave (``runs:/…``, ``models:/<logged model id>``, ``mlflow-artifacts:/…``)
    and the MLflow 3 logged model, shown back to MLflow clients as given (migration 0016).
    The files themselves are the version's snapshot (``VersionFile``), as for any version."""

    __tablename__ = "version_origins"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(Text)
    logged_model_id: Mapped[str | None] = mapped_column(String(64))
