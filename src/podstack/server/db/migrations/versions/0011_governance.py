"""Approval governance: gated aliases, production endpoints, metric provenance

Revision ID: 0011_governance
Revises: 0010_secrets_at_rest
Create Date: 2026-12-06

- ``approval_policies.gated_aliases``: alias names whose moves need approval.
- ``approval_requests.kind`` (stage | deployment | alias), ``subject`` (what a non-stage
  request changes, e.g. ``deployment:<endpoint>``) and ``action`` (the change to carry out
  once approved). At most one pending stage request per version (as before) and at most one
  pending request per subject.
- ``deployments.production``: the endpoint serves only Production (or approved) versions.

Validation metrics already record who logged them and when (``version_metrics.logged_by``,
``timestamp``, since 0002); gates now read that provenance.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import podstack.server.db.base

revision = "0011_governance"
down_revision = "0010_secrets_at_rest"
branch_labels = None
depends_on = None

_PENDING = "status = 'pending'"
_PENDING_STAGE = "status = 'pending' AND kind = 'stage'"


def upgrade() -> None:
    with op.batch_alter_table("approval_policies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "gated_aliases",
                podstack.server.db.base.JSONType,
                nullable=False,
                server_default=sa.text("'[]'"),
            )
        )
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="stage")
        )
        batch_op.add_column(sa.Column("subject", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("action", podstack.server.db.base.JSONType, nullable=True))
        batch_op.drop_index(
            "uq_approval_requests_pending_version",
            sqlite_where=sa.text(_PENDING),
            postgresql_where=sa.text(_PENDING),
        )
        batch_op.create_index(
            "uq_approval_requests_pending_version",
            ["version_id"],
            unique=True,
            sqlite_where=sa.text(_PENDING_STAGE),
            postgresql_where=sa.text(_PENDING_STAGE),
        )
        batch_op.create_index(
            "uq_approval_requests_pending_subject",
            ["subject"],
            unique=True,
            sqlite_where=sa.text(_PENDING),
            postgresql_where=sa.text(_PENDING),
        )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("production", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("production")
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_approval_requests_pending_subject",
            sqlite_where=sa.text(_PENDING),
            postgresql_where=sa.text(_PENDING),
        )
        batch_op.drop_index(
            "uq_approval_requests_pending_version",
            sqlite_where=sa.text(_PENDING_STAGE),
            postgresql_where=sa.text(_PENDING_STAGE),
        )
        batch_op.create_index(
            "uq_approval_requests_pending_version",
            ["version_id"],
            unique=True,
            sqlite_where=sa.text(_PENDING),
            postgresql_where=sa.text(_PENDING),
        )
        batch_op.drop_column("action")
        batch_op.drop_column("subject")
        batch_op.drop_column("kind")
    with op.batch_alter_table("approval_policies", schema=None) as batch_op:
        batch_op.drop_column("gated_aliases")
