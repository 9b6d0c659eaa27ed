"""MLflow compatibility: registered-model tags and version details

Revision ID: 0016_mlflow_registry
Revises: 0015_identity
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_mlflow_registry"
down_revision = "0015_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # MLflow's registered models carry key-value tags; ours had labels only (plain strings).
    op.create_table(
        "registered_model_tags",
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_registered_model_tags_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "key", name=op.f("pk_registered_model_tags")),
    )
    # The source URI an MLflow client registered a version from, shown back as given.
    op.create_table(
        "version_origins",
        sa.Column(
            "version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("logged_model_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_version_origins_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_version_origins")),
    )


def downgrade() -> None:
    op.drop_table("version_origins")
    op.drop_table("registered_model_tags")
