"""merge schedules, approvals and deployments

Revision ID: 0006_merge
Revises: 0003_schedules, 0004_approvals_notifications, 0005_deployments
Create Date: 2026-11-26
"""

from __future__ import annotations

from sqlalchemy import Text  # noqa: F401  (autogenerate renders JSONB(astext_type=Text()))
from sqlalchemy.dialects import postgresql  # noqa: F401

import podstack.server.db.base  # noqa: F401  (custom column types)

revision = "0006_merge"
down_revision = ("0003_schedules", "0004_approvals_notifications", "0005_deployments")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
