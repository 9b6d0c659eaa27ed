"""Identity: single sign-on users, groups and service accounts

Revision ID: 0015_identity
Revises: 0014_mlflow_compat
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import podstack.server.db.base

revision = "0015_identity"
down_revision = "0014_mlflow_compat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing users are people; service accounts are created as such from now on.
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="human", nullable=False)
        )
    op.create_table(
        "user_identities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", podstack.server.db.base.UTCDateTime(), nullable=False),
        sa.Column("last_sign_in_at", podstack.server.db.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "subject", name="uq_user_identities_iss_sub"),
    )
    op.create_index("ix_user_identities_user_id", "user_identities", ["user_id"], unique=True)
    op.create_table(
        "directory_groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", podstack.server.db.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "directory_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_at", podstack.server.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["directory_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_index(
        "ix_directory_group_members_user", "directory_group_members", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_directory_group_members_user", table_name="directory_group_members")
    op.drop_table("directory_group_members")
    op.drop_table("directory_groups")
    op.drop_index("ix_user_identities_user_id", table_name="user_identities")
    op.drop_table("user_identities")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("kind")
