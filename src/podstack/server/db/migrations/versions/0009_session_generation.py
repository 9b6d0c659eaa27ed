"""UI sessions: per-user session generation; token prefixes may be absent

Revision ID: 0009_session_generation
Revises: 0008_label_model_name
Create Date: 2026-12-06

``users.session_generation`` is copied into a browser session at sign-in and compared on every
request (deps.py ``authenticate``): sign-out, password, role changes and disabling bump it, so
a saved cookie stops working. Existing rows start at 0; cookies issued before this migration
carry no generation and are refused (everyone signs in once more).

``api_tokens.prefix`` becomes nullable: only generated ``pst_`` tokens keep a prefix, a chosen
value (PODSTACK_ADMIN_TOKEN) stores none.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0009_session_generation"
down_revision = "0008_label_model_name"
branch_labels = None
depends_on = None

# batch_alter_table (SQLite copies the table to alter a column) reflects the tables it refers
# to; SQLAlchemy then warns that it cannot reflect registered_models' expression index, which
# the copy does not touch (as in 0008).
_REFLECTION = "Skipped unsupported reflection"


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _REFLECTION, sa.exc.SAWarning)
        with op.batch_alter_table("api_tokens") as batch:
            batch.alter_column("prefix", existing_type=sa.String(length=16), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE api_tokens SET prefix = '' WHERE prefix IS NULL")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _REFLECTION, sa.exc.SAWarning)
        with op.batch_alter_table("api_tokens") as batch:
            batch.alter_column("prefix", existing_type=sa.String(length=16), nullable=False)
        with op.batch_alter_table("users") as batch:
            batch.drop_column("session_generation")
