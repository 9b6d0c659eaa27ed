"""Notifications name the model or experiment they are about (so the read filter hides them
from recipients who can no longer read it)

Revision ID: 0023_notification_resources
Revises: 0022_protections
Create Date: 2026-12-07
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0023_notification_resources"
down_revision = "0022_protections"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_id", BigId, nullable=True))
        batch_op.add_column(sa.Column("experiment_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_notifications_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_notifications_model_id"), ["model_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_notifications_experiment_id_experiments"),
            "experiments",
            ["experiment_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_notifications_model_id_registered_models"),
            "registered_models",
            ["model_id"],
            ["id"],
            ondelete="CASCADE",
        )
    _backfill()


def _backfill() -> None:
    """Every notification so far is about an approval request (data.request_id); it is about
    that request's model. Read in Python: JSON access differs between the two databases."""
    conn = op.get_bind()
    notes = sa.table("notifications", sa.column("id"), sa.column("data"), sa.column("model_id"))
    reqs = sa.table("approval_requests", sa.column("id"), sa.column("model_id"))
    model_of = {r: m for r, m in conn.execute(sa.select(reqs.c.id, reqs.c.model_id)) if m}
    if not model_of:
        return
    for note_id, data in conn.execute(sa.select(notes.c.id, notes.c.data)).all():
        doc = json.loads(data) if isinstance(data, str) else data
        model_id = model_of.get((doc or {}).get("request_id"))
        if model_id is not None:
            conn.execute(notes.update().where(notes.c.id == note_id).values(model_id=model_id))


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_notifications_model_id_registered_models"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_notifications_experiment_id_experiments"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_notifications_model_id"))
        batch_op.drop_index(batch_op.f("ix_notifications_experiment_id"))
        batch_op.drop_column("experiment_id")
        batch_op.drop_column("model_id")
