"""model labels: copy of the model name and an index on (label, model_name)

Revision ID: 0008_label_model_name
Revises: 0007_model_name_prefix_index
Create Date: 2026-11-26

Label search in name order reads a page as a range of ``ix_model_labels_label_name``
(registry/model_pages.py ``search_models``) instead of walking every model's name and probing
each one for the label. ``model_name`` has the same type and (default) collation as
``registered_models.name``, so it sorts exactly as the name does.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0008_label_model_name"
down_revision = "0007_model_name_prefix_index"
branch_labels = None
depends_on = None

INDEX = "ix_model_labels_label_name"

# batch_alter_table (SQLite copies the table to alter a column) reflects registered_models
# through the foreign key; SQLAlchemy then warns that it cannot reflect that table's
# expression index, which the copy of model_labels does not touch.


def upgrade() -> None:
    op.add_column("model_labels", sa.Column("model_name", sa.String(length=128), nullable=True))
    op.execute(
        "UPDATE model_labels SET model_name = (SELECT registered_models.name "
        "FROM registered_models WHERE registered_models.id = model_labels.model_id)"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table("model_labels") as batch:
            batch.alter_column("model_name", existing_type=sa.String(length=128), nullable=False)
    op.create_index(INDEX, "model_labels", ["label", "model_name"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="model_labels")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table("model_labels") as batch:
            batch.drop_column("model_name")
