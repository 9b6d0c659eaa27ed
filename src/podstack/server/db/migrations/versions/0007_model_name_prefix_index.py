"""registered models: index on (lower(name), name) for case-insensitive name-prefix search

Revision ID: 0007_model_name_prefix_index
Revises: 0006_merge
Create Date: 2026-11-26

Search with text ``q`` takes the models whose name starts with ``q`` first, as a range of
this index (registry/model_pages.py ``search_models``). PostgreSQL compares in "C" order there:
only in code point order is "starts with q" one contiguous range, whatever the database
collation. SQLite compares BINARY (code point order) by default.
"""

from __future__ import annotations

from alembic import op

revision = "0007_model_name_prefix_index"
down_revision = "0006_merge"
branch_labels = None
depends_on = None

INDEX = "ix_registered_models_lower_name"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX {INDEX} ON registered_models "
            '((lower(name) COLLATE "C"), (name COLLATE "C"))'
        )
    else:
        op.execute(f"CREATE INDEX {INDEX} ON registered_models (lower(name), name)")


def downgrade() -> None:
    op.execute(f"DROP INDEX {INDEX}")
