"""Provenance: signing keys, model version signatures and provenance statements

Revision ID: 0019_signing
Revises: 0018_artifact_store
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import podstack.server.db.base

revision = "0019_signing"
down_revision = "0018_artifact_store"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(length=80), nullable=False),
        sa.Column("public_pem", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", podstack.server.db.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_table(
        "version_signatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("signer", sa.String(length=255), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=True),
        sa.Column("created_at", podstack.server.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["signing_keys.key_id"]),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_version_signatures_version", "version_signatures", ["version_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_version_signatures_version", table_name="version_signatures")
    op.drop_table("version_signatures")
    op.drop_table("signing_keys")
