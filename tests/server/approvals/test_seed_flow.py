"""The seed's "Approval Workflows" end to end over HTTP, with three users, a real webhook
receiver and a real SMTP server: request, notifications, a first approval that leaves the
request pending, a second that applies the transition, signed webhooks, emails."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.events import signing
from podstack.server.notifications.delivery import DeliveryConfig, process_emails, process_webhooks
from tests.server.approvals.helpers import make_user, make_version, stage_of, transition
from tests.server.notifications.receivers import SmtpServer, WebhookReceiver

MODEL = "sentiment-classifier"
FAST = DeliveryConfig(timeout_seconds=5, base_delay_seconds=0)


def test_seed_approval_flow_with_quorum_of_two(
    api: httpx.Client,
    db: Database,
    settings: Settings,
    client_for: Callable[[str], httpx.Client],
    webhook_receiver: WebhookReceiver,
    smtp_server: SmtpServer,
) -> None:
    alice = client_for(make_user(db, "alice", "editor", "alice@example.com"))
    bob = client_for(make_user(db, "bob", "editor", "bob@example.com"))
    carol = client_for(make_user(db, "carol", "viewer", "carol@example.com"))

    # Admin: a reviewer group, a webhook, and a policy for the model (2 of 2, with a gate).
    r = api.post("/groups", json={"name": "ml-leads", "members": ["bob", "carol"]})
    assert r.status_code == 201, r.text
    hook = api.post("/webhooks", json={"url": webhook_receiver.url, "events": ["stage.*"]})
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]

    # The seed's Integration Example, as alice: run, version, Staging (not gated).
    version = make_version(alice, MODEL, {"accuracy": 0.94, "f1": 0.92})
    r = api.put(
        f"/registered-models/{MODEL}/approval-policy",
        json={
            "gated_stages": ["production"],
            "reviewer_groups": ["ml-leads"],
            "required_approvals": 2,
            "gates": ["accuracy >= 0.9"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["gated_stages"] == ["Production"] and r.json()["source"] == "model"
    r = transition(alice, MODEL, version, "Staging")
    assert r.status_code == 200 and r.json()["stage"] == "Staging"

    # 1. alice asks for Production: nothing moves, a request is pending.
    r = transition(alice, MODEL, version, "Production", note="Ready: beats v0 on reviews")
    assert r.status_code == 202, r.text
    pending = r.json()["pending_request"]
    request_id = pending["id"]
    assert request_id.startswith("apr-") and request_id in pending["message"]
    assert stage_of(api, MODEL, version) == "Staging"

    # 2. Both reviewers are notified in the app.
    for reviewer in (bob, carol):
        assert reviewer.get("/notifications/unread-count").json() == {"unread": 1}
        (note,) = reviewer.get("/notifications").json()["items"]
        assert note["kind"] == "approval.requested"
        assert note["link"] == f"/approvals/{request_id}"
        assert "alice" in note["title"] and "Production" in note["title"]
    assert alice.get("/notifications/unread-count").json() == {"unread": 0}

    # Reviewers see the request with gate results and the metrics to compare.
    detail = bob.get(f"/approval-requests/{request_id}").json()
    assert detail["status"] == "pending" and detail["requester"] == "alice"
    assert detail["from_stage"] == "Staging" and detail["to_stage"] == "Production"
    assert detail["reviewers"] == ["bob", "carol"] and detail["required_approvals"] == 2
    assert [g["passed"] for g in detail["current_gate_results"]] == [True]
    assert detail["metrics"]["metrics"]["accuracy"] == 0.94
    assert detail["metrics"]["production_version"] is None
    assert set(detail["allowed_actions"]) >= {"approve", "reject"}
    assert [c["kind"] for c in detail["comments"]] == ["request"]
    listed = bob.get("/approval-requests", params={"status": "pending"}).json()["items"]
    assert [x["id"] for x in listed] == [request_id]

    # 3. One approval of two: still pending, still Staging.
    r = bob.post(f"/approval-requests/{request_id}/approve", json={"comment": "LGTM"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["approvals"] == 1
    assert stage_of(api, MODEL, version) == "Staging"

    # 4. The second approval applies the transition in the same transaction.
    r = carol.post(f"/approval-requests/{request_id}/approve", json={})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "approved" and done["approved_by"] == ["bob", "carol"]
    assert [c["kind"] for c in done["comments"]] == ["request", "approve", "approve", "applied"]
    assert stage_of(api, MODEL, version) == "Production"
    history = api.get(f"/registered-models/{MODEL}/versions/{version}/transitions").json()
    (last,) = [t for t in history if t["to_stage"] == "Production"]
    assert last["to_stage"] == "Production" and last["request_id"] == request_id
    assert last["actor"] == "alice"

    # The requester hears about the decision.
    notes = alice.get("/notifications", params={"unread": True}).json()["items"]
    assert [n["kind"] for n in notes] == ["approval.approved"]
    r = alice.post("/notifications/mark-read", json={"all": True})
    assert r.json() == {"marked": 1}
    assert alice.get("/notifications/unread-count").json() == {"unread": 0}

    # 5. Webhooks: the outbox holds signed deliveries for every stage event, in order.
    report = process_webhooks(db, FAST, settings=settings)
    assert report.succeeded == report.claimed == 4 and report.failed == 0
    types = [r.json["type"] for r in webhook_receiver.received]
    assert sorted(types) == sorted(
        [
            "stage.transition_applied",  # -> Staging
            "stage.transition_requested",
            "stage.transition_approved",
            "stage.transition_applied",  # -> Production
        ]
    )
    for got in webhook_receiver.received:
        assert signing.verify(secret, got.headers, got.body), got.headers
        assert not signing.verify("wrong-secret", got.headers, got.body)
        assert got.headers["Podstack-Webhook-Id"] == got.json["id"]
    (requested,) = webhook_receiver.of_type("stage.transition_requested")
    assert requested.json["data"]["request_id"] == request_id
    assert requested.json["data"]["requester"] == "alice"
    applied = [r.json["data"] for r in webhook_receiver.of_type("stage.transition_applied")]
    assert any(a["to_stage"] == "Production" and a["request_id"] == request_id for a in applied)
    deliveries = api.get(f"/webhooks/{hook.json()['id']}/deliveries").json()["items"]
    assert len(deliveries) == 4
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in deliveries)
    assert all(d["attempt_log"][0]["status_code"] == 204 for d in deliveries)

    # 6. Email through a real SMTP server: reviewers on the request, requester on approval.
    smtp = settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "public_url": "https://mlops.example.com",
        }
    )
    report = process_emails(db, smtp, FAST)
    assert report.succeeded == 3, report
    for reviewer in ("bob@example.com", "carol@example.com"):
        (mail,) = smtp_server.sink.to(reviewer)
        assert "Review requested" in mail["Subject"] and MODEL in mail["Subject"]
        assert f"https://mlops.example.com/approvals/{request_id}" in mail.get_payload()
    (mail,) = smtp_server.sink.to("alice@example.com")
    assert "Approved" in mail["Subject"]
    emails = api.get("/email-deliveries").json()["items"]
    assert sorted(e["status"] for e in emails) == ["sent"] * 3
