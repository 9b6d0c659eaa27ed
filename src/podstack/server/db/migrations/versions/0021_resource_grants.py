"""Permissions: grants of READ / EDIT / MANAGE on models and experiments to users or groups

Revision ID: 0021_resource_grants
Revises: 0020_metric_extremes
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import podstack.server.db.base

revision = "0021_resource_grants"
down_revision = "0020_metric_extremes"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resource_grants",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("model_id", BigId, nullable=True),
        sa.Column("experiment_id", sa.String(length=64), nullable=True),
        sa.Column("grantee_type", sa.String(length=16), nullable=False),
        sa.Column("grantee", sa.String(length=255), nullable=False),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.Column("granted_by", sa.String(length=64), nullable=False),
        sa.Column("granted_at", podstack.server.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(resource_type = 'model' AND model_id IS NOT NULL AND experiment_id IS NULL) OR "
            "(resource_type = 'experiment' AND experiment_id IS NOT NULL AND model_id IS NULL)",
            name=op.f("ck_resource_grants_one_resource"),
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_resource_grants_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_resource_grants_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_grants")),
        sa.UniqueConstraint(
            "experiment_id", "grantee_type", "grantee", name="uq_resource_grants_experiment"
        ),
        sa.UniqueConstraint("model_id", "grantee_type", "grantee", name="uq_resource_grants_model"),
    )
    with op.batch_alter_table("resource_grants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resource_grants_grantee", ["grantee_type", "grantee", "resource_type"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("resource_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_resource_grants_grantee")
    op.drop_table("resource_grants")
