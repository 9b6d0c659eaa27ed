"""MLflow compatibility: id mappings and logged models

Revision ID: 0014_mlflow_compat
Revises: 0013_object_store
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import podstack.server.db.base

revision = "0014_mlflow_compat"
down_revision = "0013_object_store"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # MLflow 3 logged models; their files are artifacts of run_id (mlflow_compat/models.py).
    # Run and experiment ids need no table: the mapping is computed (mlflow_compat/ids.py).
    op.create_table(
        "mlflow_logged_models",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("experiment_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("source_run_id", sa.String(length=64), nullable=True),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("model_type", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("params", podstack.server.db.base.JSONType, nullable=False),
        sa.Column("tags", podstack.server.db.base.JSONType, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", podstack.server.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", podstack.server.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_mlflow_logged_models_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_mlflow_logged_models_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mlflow_logged_models")),
    )
    op.create_index(
        op.f("ix_mlflow_logged_models_experiment_id"),
        "mlflow_logged_models",
        ["experiment_id"],
        unique=False,
    )
    op.create_index(
        "ix_mlflow_logged_models_run_name", "mlflow_logged_models", ["run_id", "name"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_mlflow_logged_models_run_name", table_name="mlflow_logged_models")
    op.drop_index(op.f("ix_mlflow_logged_models_experiment_id"), table_name="mlflow_logged_models")
    op.drop_table("mlflow_logged_models")
