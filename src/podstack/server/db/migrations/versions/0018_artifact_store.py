"""Artifact store: object-store locations

Revision ID: 0018_artifact_store
Revises: 0017_mlflow_import
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0018_artifact_store"
down_revision = "0017_mlflow_import"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Placeholder in the linear chain; filled by the change that needs it.
    pass


def downgrade() -> None:
    pass
