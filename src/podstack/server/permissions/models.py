"""Grants of a permission on a registered model or an experiment to a user or a group.

One row per (resource, grantee). The resource is named by two nullable foreign keys rather
than one untyped id: model ids are integers and experiment ids strings, and the foreign keys
let the database delete a resource's grants with the resource (ON DELETE CASCADE), on every
path that deletes one. Exactly one of them is set, matching ``resource_type``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class ResourceGrant(Base):
    __tablename__ = "resource_grants"
    __table_args__ = (
        # NULLs are distinct in unique constraints (SQLite and PostgreSQL), so each of these
        # only bites for the resource type whose column is set.
        UniqueConstraint("model_id", "grantee_type", "grantee", name="uq_resource_grants_model"),
        UniqueConstraint(
            "experiment_id", "grantee_type", "grantee", name="uq_resource_grants_experiment"
        ),
        CheckConstraint(
            "(resource_type = 'model' AND model_id IS NOT NULL AND experiment_id IS NULL) OR "
            "(resource_type = 'experiment' AND experiment_id IS NOT NULL AND model_id IS NULL)",
            name="one_resource",
        ),
        # The read filter: "which resources does this user or these groups have a grant on".
        Index("ix_resource_grants_grantee", "grantee_type", "grantee", "resource_type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(16))  # model | experiment
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE")
    )
    experiment_id: Mapped[str | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE")
    )
    grantee_type: Mapped[str] = mapped_column(String(16))  # user | group
    # A username (users.username, String(64)) or a group name (directory or reviewer group).
    grantee: Mapped[str] = mapped_column(String(255))
    permission: Mapped[str] = mapped_column(String(16))  # READ | EDIT | MANAGE
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def resource_id(self) -> str:
        return str(self.model_id if self.resource_type == "model" else self.experiment_id)


class ModelProtection(Base):
    """An alias or a stage of a registered model that only MANAGE holders (or members of
    ``group_name``) may move. One row per (model, kind, name); deleted with the model."""

    __tablename__ = "model_protections"
    __table_args__ = (
        UniqueConstraint("model_id", "kind", "name", name="uq_model_protections"),
        CheckConstraint("kind IN ('alias', 'stage')", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # alias | stage
    # An alias (1-128 characters) or a canonical stage name.
    name: Mapped[str] = mapped_column(String(128))
    # A reviewer or directory group (matched by name, as grants are) whose members may move it
    # besides MANAGE holders; None: MANAGE holders only.
    group_name: Mapped[str | None] = mapped_column(String(255))
    protected_by: Mapped[str] = mapped_column(String(64))
    protected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
