"""Tracking: each run's min and max of a metric kept on latest_metrics

Sorting the runs table by a metric's min or max used to aggregate the whole history of every
run of the experiment per page view (issue 20: 103 ms median at 10,000 runs). The upsert
that keeps the latest value now keeps the extremes too; this fills them for existing rows.

Revision ID: 0020_metric_extremes
Revises: 0019_signing
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_metric_extremes"
down_revision = "0019_signing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("latest_metrics") as batch:
        batch.add_column(sa.Column("min_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_value", sa.Float(), nullable=True))
    # NaN points are stored as NULL (SQLite cannot store NaN), so min()/max() skip them, as the
    # upsert does for new points.
    op.execute(
        "UPDATE latest_metrics SET"
        " min_value = (SELECT min(m.value) FROM metrics m"
        "  WHERE m.run_id = latest_metrics.run_id AND m.key = latest_metrics.key),"
        " max_value = (SELECT max(m.value) FROM metrics m"
        "  WHERE m.run_id = latest_metrics.run_id AND m.key = latest_metrics.key)"
    )


def downgrade() -> None:
    with op.batch_alter_table("latest_metrics") as batch:
        batch.drop_column("max_value")
        batch.drop_column("min_value")
