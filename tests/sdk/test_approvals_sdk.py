"""Approvals, notifications and webhooks through the SDK, on both backends (embedded and a
live server). Reviewers are separate users talking to the live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from podstack import MLOpsClient
from podstack.errors import (
    ApprovalRequired,
    Conflict,
    GateFailed,
    PermissionDenied,
    ValidationFailed,
)
from podstack.server.db.session import Database
from podstack.server.events import signing
from tests.conftest import LiveServer
from tests.server.approvals.helpers import make_user
from tests.server.notifications.receivers import WebhookReceiver

MODEL = "sentiment-classifier"


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def reviewer(db: Database, live_server: LiveServer) -> Iterator[MLOpsClient]:
    c = MLOpsClient(api_token=make_user(db, "rev", "editor"), url=live_server.url)
    yield c
    c.close()


def _version(client: MLOpsClient, tmp_path: Path, accuracy: float) -> int:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    with client.start_run(experiment_id="sentiment-exp") as run:
        run.log_metrics({"accuracy": accuracy, "f1": 0.9})
        run.log_artifact(str(weights))
        run_id = run.id
    v = client.create_model_version(
        model_name=MODEL, source_run_id=run_id, artifact_path="model.pt"
    )
    return v.version


def test_gated_transition_raises_approval_required_and_completes_on_approval(
    client: MLOpsClient, reviewer: MLOpsClient, tmp_path: Path
) -> None:
    version = _version(client, tmp_path, 0.94)
    policy = client.set_approval_policy(
        MODEL, gated_stages=["Production"], reviewers=["rev"], gates=["accuracy >= 0.9"]
    )
    assert policy.source == "model" and policy.gates == ["accuracy >= 0.9"]
    assert client.get_approval_policy(MODEL).reviewers == ["rev"]
    assert client.get_approval_policy().gated_stages == []

    staged = client.transition_model_version_stage(MODEL, version, "Staging")
    assert staged.stage == "Staging"
    with pytest.raises(ApprovalRequired) as exc:
        client.transition_model_version_stage(MODEL, version, "Production", note="ship it")
    request_id = exc.value.request_id
    assert request_id and request_id.startswith("apr-")
    assert request_id in str(exc.value) and exc.value.details["to_stage"] == "Production"
    assert client.get_model_version(MODEL, version).stage == "Staging"

    req = client.get_approval_request(request_id)
    assert req.status == "pending" and req.note == "ship it" and req.reviewers == ["rev"]
    assert req.metrics is not None and req.metrics.metrics["accuracy"] == 0.94
    assert [g.passed for g in req.current_gate_results] == [True]
    pending = client.list_approval_requests(status="pending", model_name=MODEL)
    assert [r.id for r in pending] == [request_id]

    assert reviewer.unread_notification_count() == 1
    (note,) = reviewer.list_notifications()
    assert note.link == f"/approvals/{request_id}" and not note.read
    reviewer.comment_on_request(request_id, "Looks good")
    done = reviewer.approve_request(request_id, comment="approved")
    assert done.status == "approved" and done.approved_by == ["rev"]
    assert client.wait_for_approval(request_id, timeout=1).status == "approved"
    assert client.get_model_version(MODEL, version).stage == "Production"
    history = client.get_model_version_stage_history(MODEL, version)
    assert any(t.to_stage == "Production" and t.request_id == request_id for t in history)
    assert reviewer.mark_notifications_read() == 1
    assert reviewer.unread_notification_count() == 0


def test_bad_input_raises_typed_errors(
    client: MLOpsClient, reviewer: MLOpsClient, tmp_path: Path
) -> None:
    good = _version(client, tmp_path, 0.95)
    weak = _version(client, tmp_path, 0.5)
    with pytest.raises(ValidationFailed, match="Gate 1 'accuracy >> 1' is invalid"):
        client.set_approval_policy(MODEL, gated_stages=["Production"], gates=["accuracy >> 1"])
    client.set_approval_policy(
        MODEL, gated_stages=["Production"], reviewers=["rev"], gates=["accuracy >= 0.9"]
    )
    with pytest.raises(GateFailed) as gate:
        client.transition_model_version_stage(MODEL, weak, "Production")
    assert gate.value.details["gates"][0]["passed"] is False
    assert isinstance(gate.value, Conflict)

    req = client.request_stage_transition(MODEL, good, "Production")
    with pytest.raises(ValidationFailed, match="comment is required"):
        reviewer.reject_request(req.id, "")
    rejected = reviewer.reject_request(req.id, "needs a fairness review")
    assert rejected.status == "rejected"
    with pytest.raises(Conflict, match="already rejected"):
        reviewer.approve_request(req.id)
    with pytest.raises(PermissionDenied):
        reviewer.set_approval_policy(MODEL)

    again = client.request_stage_transition(MODEL, good, "Production")
    assert client.cancel_request(again.id, "not now").status == "cancelled"
    assert [r.status for r in client.list_approval_requests(model_name=MODEL)] == [
        "cancelled",
        "rejected",
    ]


def test_groups_and_policies(client: MLOpsClient, reviewer: MLOpsClient, tmp_path: Path) -> None:
    _version(client, tmp_path, 0.9)
    group = client.create_group("ml-leads", members=["rev"], description="Leads")
    assert group.members == ["rev"]
    assert [g.name for g in client.list_groups()] == ["ml-leads"]
    client.set_approval_policy(
        MODEL, gated_stages=["Staging"], reviewer_groups=["ml-leads"], required_approvals=1
    )
    policies = client.list_approval_policies()
    assert [p.model_name for p in policies] == [None, MODEL]
    assert client.delete_approval_policy(MODEL).source == "default"
    assert client.remove_group_member("ml-leads", "rev").members == []
    assert client.add_group_member("ml-leads", "rev").members == ["rev"]
    client.delete_group("ml-leads")
    assert client.list_groups() == []


def test_webhooks_through_the_sdk(client: MLOpsClient, webhook_receiver: WebhookReceiver) -> None:
    hook = client.create_webhook(webhook_receiver.url, events=["stage.*"], description="chat")
    assert hook.secret and [w.id for w in client.list_webhooks()] == [hook.id]
    delivery = client.test_webhook(hook.id)
    assert delivery.status == "delivered" and delivery.attempt_log[0].status_code == 204
    (got,) = webhook_receiver.received
    assert signing.verify(hook.secret, got.headers, got.body)
    assert [d.id for d in client.list_webhook_deliveries(hook.id)] == [delivery.id]
    assert client.update_webhook(hook.id, enabled=False).enabled is False
    client.delete_webhook(hook.id)
    assert client.list_webhooks() == []
