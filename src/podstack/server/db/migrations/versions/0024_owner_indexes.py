"""Indexes on the owner (created_by) of registered models and experiments, for the permission
read filter's "what this user owns" (benchmarks/permissions_search.py)

Revision ID: 0024_owner_indexes
Revises: 0023_notification_resources
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0024_owner_indexes"
down_revision = "0023_notification_resources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_registered_models_created_by"), ["created_by"], unique=False
        )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiments_created_by"), ["created_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_created_by"))
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registered_models_created_by"))
