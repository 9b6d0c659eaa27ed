"""Object store: multipart uploads in progress

Revision ID: 0013_object_store
Revises: 0012_idempotency
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import podstack.server.db.base

revision = "0013_object_store"
down_revision = "0012_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_uploads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("part_size", sa.BigInteger(), nullable=True),
        sa.Column("s3_upload_id", sa.Text(), nullable=True),
        sa.Column("staging_key", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", podstack.server.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_artifact_uploads_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_uploads")),
    )
    op.create_index(
        "ix_artifact_uploads_target", "artifact_uploads", ["run_id", "path", "sha256"], unique=False
    )
    op.create_index(
        op.f("ix_artifact_uploads_created_at"), "artifact_uploads", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_artifact_uploads_created_at"), table_name="artifact_uploads")
    op.drop_index("ix_artifact_uploads_target", table_name="artifact_uploads")
    op.drop_table("artifact_uploads")
