"""Protected aliases and stages of registered models

Revision ID: 0022_protections
Revises: 0021_resource_grants
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import podstack.server.db.base

revision = "0022_protections"
down_revision = "0021_resource_grants"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_protections",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model_id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=True),
        sa.Column("protected_by", sa.String(length=64), nullable=False),
        sa.Column(
            "protected_at", podstack.server.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint("kind IN ('alias', 'stage')", name=op.f("ck_model_protections_kind")),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_model_protections_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_protections")),
        # Also the index every alias move and stage transition looks protections up by.
        sa.UniqueConstraint("model_id", "kind", "name", name="uq_model_protections"),
    )


def downgrade() -> None:
    op.drop_table("model_protections")
