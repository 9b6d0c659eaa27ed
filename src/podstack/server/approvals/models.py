"""Approval policies, reviewer groups, approval requests with their votes and comment thread.

A request keeps the model name and version *number* next to nullable row ids (like the
registry's history tables), so its history survives the version or model being deleted.
It also snapshots the policy it was created under (reviewers, quorum, gates): changing a
policy later does not move the goalposts of requests already open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from podstack.server.db.base import Base, JSONType, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")
DEFAULT_SCOPE = "*"


class ReviewerGroup(Base):
    __tablename__ = "reviewer_groups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewerGroupMember(Base):
    __tablename__ = "reviewer_group_members"
    __table_args__ = (Index("ix_reviewer_group_members_user", "user_id"),)

    group_id: Mapped[int] = mapped_column(
        ForeignKey("reviewer_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    added_by: Mapped[str | None] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApprovalPolicy(Base):
    """The global default (``scope == "*"``, no model) or one model's policy (which replaces
    the default entirely for that model)."""

    __tablename__ = "approval_policies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # "*" or the model id as text: one unique key for both kinds (NULLs would not be unique).
    scope: Mapped[str] = mapped_column(String(32), unique=True)
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE")
    )
    gated_stages: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Alias names whose set/move/delete needs approval (like a gated stage).
    gated_aliases: Mapped[list[str]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
    reviewer_users: Mapped[list[str]] = mapped_column(JSONType, default=list)
    reviewer_groups: Mapped[list[str]] = mapped_column(JSONType, default=list)
    required_approvals: Mapped[int] = mapped_column(Integer, default=1)
    gates: Mapped[list[str]] = mapped_column(JSONType, default=list)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApprovalRequest(Base):
    __tablename__ = "approval_requests"
    __table_args__ = (
        Index("ix_approval_requests_status_created", "status", "created_at", "id"),
        Index("ix_approval_requests_created", "created_at", "id"),
        Index("ix_approval_requests_model", "model_name", "status"),
        # At most one open stage request per version (also under concurrent requesters).
        Index(
            "uq_approval_requests_pending_version",
            "version_id",
            unique=True,
            sqlite_where=text("status = 'pending' AND kind = 'stage'"),
            postgresql_where=text("status = 'pending' AND kind = 'stage'"),
        ),
        # At most one open deployment/alias request per endpoint or alias.
        Index(
            "uq_approval_requests_pending_subject",
            "subject",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # stage (a stage transition) | deployment (what a production endpoint serves) | alias
    kind: Mapped[str] = mapped_column(String(16), default="stage", server_default="stage")
    # What a deployment/alias request changes ("deployment:<endpoint>", "alias:<model>/<a>").
    subject: Mapped[str | None] = mapped_column(String(300))
    # The change to carry out once approved (deployment/alias requests), as plain JSON.
    action: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("registered_models.id", ondelete="SET NULL")
    )
    model_name: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    version: Mapped[int] = mapped_column(Integer)
    from_stage: Mapped[str] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    archive_existing: Mapped[bool] = mapped_column(Boolean, default=False)
    requester: Mapped[str] = mapped_column(String(64), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    # pending | approved | rejected | cancelled | stale
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Why it is stale / who decided, in words.
    status_reason: Mapped[str | None] = mapped_column(Text)
    required_approvals: Mapped[int] = mapped_column(Integer, default=1)
    reviewer_users: Mapped[list[str]] = mapped_column(JSONType, default=list)
    reviewer_groups: Mapped[list[str]] = mapped_column(JSONType, default=list)
    gates: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Results of the latest evaluation (at request time, then at each approval).
    gate_results: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))


class ApprovalVote(Base):
    __tablename__ = "approval_votes"

    request_id: Mapped[str] = mapped_column(
        ForeignKey("approval_requests.id", ondelete="CASCADE"), primary_key=True
    )
    reviewer: Mapped[str] = mapped_column(String(64), primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApprovalComment(Base):
    """The request's thread: comments and the events that shaped it, in order."""

    __tablename__ = "approval_comments"
    __table_args__ = (Index("ix_approval_comments_request", "request_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("approval_requests.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(64))
    # request | comment | approve | reject | cancel | stale | applied
    kind: Mapped[str] = mapped_column(String(16), default="comment")
    body: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
