"""MLOps > Approvals in a real browser: a gated Change Stage becomes a request, the reviewer's
bell shows it, the reviewer approves (the transition applies) or rejects with a comment, and
gate failures are shown (at request time and on a request whose gate now fails)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from podstack import MLOpsClient
from podstack.server.auth import service as auth_service
from podstack.server.db.session import Database
from tests.browser.conftest import Person, login, seed_run, toast
from tests.conftest import LiveServer

MODEL = "sentiment-classifier"


def _token(db: Database, username: str) -> str:
    with db.session() as s:
        return auth_service.create_token(s, "test", username, "test").value


@pytest.fixture
def team(make_user: Callable[..., Person]) -> dict[str, Person]:
    return {"alice": make_user("editor", "alice"), "bob": make_user("editor", "bob")}


@pytest.fixture
def staged(sdk: MLOpsClient, tmp_path: Path, team: dict[str, Person]) -> int:
    """v1 in Production (accuracy 0.9), v2 in Staging (accuracy 0.95); Production is gated,
    reviewed by bob, with a gate on accuracy."""
    for final in (0.9, 0.95):
        run = seed_run(sdk, tmp_path, name=f"run-{final}", final=final)
        sdk.create_model_version(MODEL, run, "", description=f"accuracy {final}")
    sdk.transition_model_version_stage(MODEL, 1, "Production")
    sdk.transition_model_version_stage(MODEL, 2, "Staging")
    sdk.set_approval_policy(
        MODEL, gated_stages=["Production"], reviewers=["bob"], gates=["accuracy >= 0.9"]
    )
    return 2


def _switch_user(page: Any, who: Person) -> None:
    page.context.clear_cookies()
    login(page, who)


def test_change_stage_becomes_a_request_that_the_reviewer_approves(
    page: Any, team: dict[str, Person], staged: int, sdk: MLOpsClient
) -> None:
    # alice asks for Production through the version page's Change Stage.
    login(page, team["alice"])
    page.goto(f"/models/{MODEL}/versions/{staged}")
    page.get_by_role("button", name="Change Stage").click()
    dialog = page.locator("#stage-dialog")
    dialog.get_by_role("radio", name="Production").check()
    dialog.get_by_label("Transition note (optional)").fill("Beats v1 on the holdout set")
    dialog.get_by_role("button", name="Confirm").click()
    expect(toast(page)).to_contain_text("needs approval")
    expect(page.locator("[data-stage]")).to_contain_text("Staging")  # nothing moved
    (req,) = sdk.list_approval_requests(status="pending")

    # bob: the bell shows it, the notification leads to the request.
    _switch_user(page, team["bob"])
    bell = page.locator("[data-bell]")
    expect(bell.locator("[data-unread-count]")).to_have_text("1")
    bell.click()
    expect(page.locator("[data-notifications]")).to_contain_text("alice requests")
    page.locator("[data-notifications] a").first.click()
    expect(page).to_have_url(re.compile(f"/approvals/{req.id}$"))
    expect(page.locator("[data-bell] [data-unread-count]")).to_have_count(0)

    # The Approvals page lists it as pending, with the details reviewers need.
    page.get_by_role("link", name="Approvals").first.click()
    row = page.locator(f'tr[data-request="{req.id}"]')
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("0 of 1")
    expect(row).to_contain_text("awaiting you")
    row.get_by_role("link").first.click()
    details = page.locator("[data-request-details]")
    expect(details).to_contain_text(MODEL)
    expect(details).to_contain_text("Production")
    expect(details).to_contain_text("alice")
    expect(details).to_contain_text("Beats v1 on the holdout set")
    expect(page.locator('[data-gate="accuracy >= 0.9"]')).to_contain_text("Pass")
    metrics = page.locator("[data-metrics-comparison]")
    expect(metrics).to_contain_text("Production v1")
    expect(metrics.locator("tr", has_text="accuracy")).to_contain_text("0.95")
    expect(metrics.locator("tr", has_text="accuracy")).to_contain_text("0.9")

    page.get_by_role("button", name="Approve").click()
    approve = page.locator("#approve-dialog")
    expect(approve).to_contain_text("the transition is applied at once")
    approve.get_by_label("Comment (optional)").fill("Checked the eval report")
    approve.get_by_role("button", name="Approve").click()
    expect(toast(page)).to_contain_text(f"Approved: {MODEL} v2 is now in Production.")
    expect(page.locator("[data-request-status]")).to_have_text("Approved")
    expect(page.locator("[data-thread]")).to_contain_text("Checked the eval report")
    expect(page.locator('[data-thread] [data-comment-kind="applied"]')).to_be_visible()
    assert sdk.get_model_version(MODEL, 2).stage == "Production"

    # Decided requests move to the history.
    page.goto("/approvals")
    expect(page.locator(f'tr[data-request="{req.id}"]')).to_have_count(0)
    page.get_by_role("link", name="Decided").click()
    expect(page.locator(f'tr[data-request="{req.id}"]')).to_contain_text("Approved")


def test_reject_needs_a_comment(
    page: Any,
    db: Database,
    team: dict[str, Person],
    staged: int,
    live_server: LiveServer,
    sdk: MLOpsClient,
) -> None:
    alice = MLOpsClient(api_token=_token(db, "alice"), url=live_server.url)
    req = alice.request_stage_transition(MODEL, staged, "Production", note="please")
    alice.close()
    login(page, team["bob"])
    page.goto(f"/approvals/{req.id}")
    page.get_by_role("button", name="Reject").click()
    dialog = page.locator("#reject-dialog")
    dialog.get_by_role("button", name="Reject").click()
    expect(dialog.locator(".field-error")).to_contain_text("A comment is required")
    assert sdk.get_approval_request(req.id).status == "pending"
    dialog.get_by_label("Comment (required)").fill("Run the fairness suite first")
    dialog.get_by_role("button", name="Reject").click()
    expect(toast(page)).to_contain_text("Request rejected")
    expect(page.locator("[data-request-status]")).to_have_text("Rejected")
    expect(page.locator('[data-thread] [data-comment-kind="reject"]')).to_contain_text(
        "Run the fairness suite first"
    )
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    assert sdk.get_model_version(MODEL, staged).stage == "Staging"

    # The requester sees the decision in her notifications.
    _switch_user(page, team["alice"])
    page.goto("/notifications")
    expect(page.locator("[data-notifications]")).to_contain_text("Rejected")
    expect(page.locator("[data-notifications]")).to_contain_text("Run the fairness suite first")


def test_gate_failures_are_shown(
    page: Any,
    db: Database,
    team: dict[str, Person],
    staged: int,
    live_server: LiveServer,
    sdk: MLOpsClient,
    tmp_path: Path,
) -> None:
    # At request time: a version below the gate cannot even be put up for review.
    weak = seed_run(sdk, tmp_path, name="weak", final=0.7)
    low = sdk.create_model_version(MODEL, weak, "").version
    login(page, team["alice"])
    page.goto(f"/models/{MODEL}/versions/{low}")
    page.get_by_role("button", name="Change Stage").click()
    dialog = page.locator("#stage-dialog")
    dialog.get_by_role("radio", name="Production").check()
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.locator("[role=alert]")).to_contain_text("does not meet the approval gates")
    expect(dialog.locator("[role=alert]")).to_contain_text("accuracy is 0.7")

    # Later: a pending request whose gate now fails is shown blocked.
    alice = MLOpsClient(api_token=_token(db, "alice"), url=live_server.url)
    req = alice.request_stage_transition(MODEL, staged, "Production")
    alice.close()
    sdk.log_model_version_metrics(MODEL, staged, {"accuracy": 0.85})
    _switch_user(page, team["bob"])
    page.goto(f"/approvals/{req.id}")
    expect(page.locator('[data-gate="accuracy >= 0.9"]')).to_contain_text("Fail")
    expect(page.locator("[data-blocked]")).to_contain_text("Gate now fails")
    expect(page.get_by_role("button", name="Approve")).to_be_disabled()
    # Posting anyway (a stale page) is refused and the request is recorded stale.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(
        f"/approvals/{req.id}/approve", headers={"X-CSRF-Token": token}, max_redirects=0
    )
    assert refused.status == 303
    page.goto(f"/approvals/{req.id}")
    expect(page.locator("[data-request-status]")).to_have_text("Stale")
    assert sdk.get_model_version(MODEL, staged).stage == "Staging"


def test_admin_manages_policies_and_groups(
    as_admin: Any, team: dict[str, Person], sdk: MLOpsClient, tmp_path: Path
) -> None:
    page = as_admin
    sdk.create_model_version(MODEL, seed_run(sdk, tmp_path), "")
    page.goto("/approvals")
    page.get_by_role("link", name="Policies").click()
    expect(page.locator('[data-policy="*"]')).to_contain_text("none")

    groups = page.locator("[data-group-form]")
    groups.get_by_label("New group").fill("ml-leads")
    groups.get_by_label("Members").fill("alice, bob")
    groups.get_by_role("button", name="Create group").click()
    expect(toast(page)).to_contain_text("Group ml-leads created.")
    expect(page.locator('[data-group="ml-leads"]')).to_contain_text("alice")

    form = page.locator("[data-policy-form]")
    form.get_by_label("Model").fill(MODEL)
    form.get_by_label("Production").check()
    form.get_by_label("Reviewer groups").fill("ml-leads")
    form.get_by_label("Required approvals").fill("2")
    form.get_by_label("Metric gates (one per line)").fill("accuracy >= 0.9\nf1 >> production")
    form.get_by_role("button", name="Save policy").click()
    expect(form.locator(".field-error")).to_contain_text("Gate 2 'f1 >> production' is invalid")
    assert sdk.get_approval_policy(MODEL).source == "default"  # nothing saved

    form = page.locator("[data-policy-form]")
    form.get_by_label("Metric gates (one per line)").fill("accuracy >= 0.9\nf1 > production")
    form.get_by_role("button", name="Save policy").click()
    expect(toast(page)).to_contain_text(f"Approval policy of model {MODEL} saved.")
    row = page.locator(f'[data-policy="{MODEL}"]')
    expect(row).to_contain_text("Production")
    expect(row).to_contain_text("ml-leads")
    expect(row).to_contain_text("f1 > production")
    policy = sdk.get_approval_policy(MODEL)
    assert policy.required_approvals == 2 and policy.gated_stages == ["Production"]

    # A non-admin sees the policies but no editing controls.
    _switch_user(page, team["alice"])
    page.goto("/approvals/policies")
    expect(page.locator(f'[data-policy="{MODEL}"]')).to_be_visible()
    expect(page.locator("[data-policy-form]")).to_have_count(0)
    expect(page.locator("[data-group-form]")).to_have_count(0)
