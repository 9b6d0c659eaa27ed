"""MLflow 3 logged models (``LoggedModel`` of ``mlflow/protos/service.proto``).

A logged model's files are run artifacts: they live in the tree of ``run_id`` under
``artifact_path`` (see ``logged_models.py`` for how the path is chosen), so the registry,
the UI and garbage collection treat them like every other run artifact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, JSONType, UTCDateTime, utcnow


class LoggedModel(Base):
    __tablename__ = "mlflow_logged_models"
    __table_args__ = (Index("ix_mlflow_logged_models_run_name", "run_id", "name"),)

    # MLflow's form, "m-" + 32 hex, kept as is.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    # The run whose artifact tree holds the files: the source run, or a run created to hold
    # a model logged outside any run.
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    source_run_id: Mapped[str | None] = mapped_column(String(64))
    artifact_path: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(256))
    model_type: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(32), default="LOGGED_MODEL_PENDING")
    status_message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
