"""MLflow import: what was copied from which source

Revision ID: 0017_mlflow_import
Revises: 0016_mlflow_registry
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0017_mlflow_import"
down_revision = "0016_mlflow_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nothing to store: `podstack import mlflow` keeps each run's MLflow id as its own id
    # (run-<32 hex>) and marks runs and versions with tags (mlflow.import.*), so what was
    # copied is found through the ordinary API. The revision stays to keep the chain linear.
    pass


def downgrade() -> None:
    pass
