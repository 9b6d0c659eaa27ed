"""Approval requests over HTTP: the rules, and every bad input (clear 4xx, nothing changed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from podstack.server.db.session import Database
from tests.server.approvals.helpers import error, make_user, make_version, stage_of, transition

MODEL = "churn"


@dataclass
class Team:
    admin: httpx.Client
    alice: httpx.Client  # requester (editor)
    bob: httpx.Client  # reviewer (editor)
    carol: httpx.Client  # reviewer (viewer)
    dave: httpx.Client  # editor, not a reviewer


@pytest.fixture
def team(api: httpx.Client, db: Database, client_for: Callable[[str], httpx.Client]) -> Team:
    return Team(
        admin=api,
        alice=client_for(make_user(db, "alice", "editor", "alice@example.com")),
        bob=client_for(make_user(db, "bob", "editor", "bob@example.com")),
        carol=client_for(make_user(db, "carol", "viewer")),
        dave=client_for(make_user(db, "dave", "editor")),
    )


def _policy(api: httpx.Client, **body: object) -> None:
    doc = {"gated_stages": ["Production"], "reviewers": ["bob", "carol"], **body}
    r = api.put(f"/registered-models/{MODEL}/approval-policy", json=doc)
    assert r.status_code == 200, r.text


def _pending(
    team: Team, metrics: dict[str, float] | None = None, **policy: object
) -> tuple[int, str]:
    """A version in Staging and alice's pending request to move it to Production."""
    v = make_version(team.alice, MODEL, metrics or {"accuracy": 0.95})
    assert transition(team.alice, MODEL, v, "Staging").status_code == 200
    _policy(team.admin, **policy)
    r = transition(team.alice, MODEL, v, "Production")
    assert r.status_code == 202, r.text
    return v, r.json()["pending_request"]["id"]


def _status(api: httpx.Client, request_id: str) -> str:
    return str(api.get(f"/approval-requests/{request_id}").json()["status"])


def test_default_policy_gates_nothing(team: Team) -> None:
    """The seed's Integration Example promotes without review out of the box."""
    v = make_version(team.alice, MODEL, {"accuracy": 0.5})
    default = team.alice.get("/approval-policy").json()
    assert default["gated_stages"] == [] and default["source"] == "default"
    assert team.alice.get(f"/registered-models/{MODEL}/approval-policy").json()["source"] == (
        "default"
    )
    for stage in ("Staging", "Production"):
        r = transition(team.alice, MODEL, v, stage)
        assert r.status_code == 200 and r.json()["pending_request"] is None
    assert team.admin.get("/approval-requests").json()["items"] == []


def test_self_approval_is_refused(team: Team) -> None:
    v, rid = _pending(team, reviewers=["alice", "bob"], required_approvals=1)
    body = error(
        team.alice.post(f"/approval-requests/{rid}/approve", json={}), 403, "PERMISSION_DENIED"
    )
    assert "your own request" in body["message"]
    detail = team.alice.get(f"/approval-requests/{rid}").json()
    assert detail["status"] == "pending" and detail["approvals"] == 0
    assert detail["reviewers"] == ["bob"]  # the requester never counts as a reviewer
    assert "approve" not in detail["allowed_actions"] and "cancel" in detail["allowed_actions"]
    assert stage_of(team.admin, MODEL, v) == "Staging"


def test_non_reviewer_cannot_decide(team: Team) -> None:
    v, rid = _pending(team)
    for action, body in (("approve", {}), ("reject", {"comment": "no"})):
        err = error(
            team.dave.post(f"/approval-requests/{rid}/{action}", json=body),
            403,
            "PERMISSION_DENIED",
        )
        assert "not a designated reviewer" in err["message"] and "bob, carol" in err["message"]
    # An admin who is not designated is not a reviewer either.
    error(team.admin.post(f"/approval-requests/{rid}/approve", json={}), 403, "PERMISSION_DENIED")
    assert _status(team.admin, rid) == "pending"
    assert team.admin.get(f"/approval-requests/{rid}").json()["votes"] == []
    assert stage_of(team.admin, MODEL, v) == "Staging"


def test_reject_needs_a_comment_then_decided_requests_are_closed(team: Team) -> None:
    v, rid = _pending(team)
    for body in (None, {}, {"comment": "   "}):
        r = team.bob.post(f"/approval-requests/{rid}/reject", json=body)
        err = error(r, 422, "VALIDATION_ERROR")
        assert "comment is required" in err["message"]
    assert _status(team.admin, rid) == "pending"

    r = team.bob.post(f"/approval-requests/{rid}/reject", json={"comment": "Needs a bias audit"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and "bias audit" in r.json()["status_reason"]
    assert stage_of(team.admin, MODEL, v) == "Staging"
    (note,) = team.alice.get("/notifications").json()["items"]
    assert note["kind"] == "approval.rejected" and "bias audit" in note["body"]

    for action, who in (("approve", team.carol), ("reject", team.carol), ("cancel", team.alice)):
        r = who.post(f"/approval-requests/{rid}/{action}", json={"comment": "x"})
        err = error(r, 409, "CONFLICT")
        assert "already rejected" in err["message"]
    assert _status(team.admin, rid) == "rejected"


def test_request_goes_stale_when_the_version_moves(team: Team) -> None:
    v, rid = _pending(team)
    # Archived is not gated: the admin archives the version directly.
    assert transition(team.admin, MODEL, v, "Archived").status_code == 200
    detail = team.bob.get(f"/approval-requests/{rid}").json()
    assert detail["status"] == "stale"
    assert "moved from Staging to Archived" in detail["status_reason"]
    err = error(team.bob.post(f"/approval-requests/{rid}/approve", json={}), 409, "CONFLICT")
    assert "already stale" in err["message"]
    assert stage_of(team.admin, MODEL, v) == "Archived"
    kinds = [n["kind"] for n in team.alice.get("/notifications").json()["items"]]
    assert "approval.stale" in kinds


def test_request_goes_stale_when_its_gate_now_fails(team: Team) -> None:
    v, rid = _pending(team, {"accuracy": 0.95}, gates=["accuracy >= 0.9"])
    # A validation metric logged on the version overrides the run's value.
    r = team.admin.post(
        f"/registered-models/{MODEL}/versions/{v}/metrics", json={"metrics": {"accuracy": 0.85}}
    )
    assert r.status_code == 200, r.text
    detail = team.bob.get(f"/approval-requests/{rid}").json()
    assert detail["current_gate_results"][0]["passed"] is False
    assert "Gate now fails" in detail["blocked_reason"]

    err = error(team.bob.post(f"/approval-requests/{rid}/approve", json={}), 409, "CONFLICT")
    assert "Gate now fails" in err["message"] and "0.85" in err["message"]
    detail = team.bob.get(f"/approval-requests/{rid}").json()
    assert detail["status"] == "stale"  # recorded although the approval was refused
    assert detail["votes"] == [] and stage_of(team.admin, MODEL, v) == "Staging"


def test_request_goes_stale_when_the_version_is_deleted(team: Team) -> None:
    v, rid = _pending(team)
    assert team.admin.delete(f"/registered-models/{MODEL}/versions/{v}").status_code == 204
    detail = team.bob.get(f"/approval-requests/{rid}").json()
    assert detail["status"] == "stale" and "deleted" in detail["status_reason"]
    assert detail["model_name"] == MODEL and detail["version"] == v  # history survives
    error(team.bob.post(f"/approval-requests/{rid}/approve", json={}), 409, "CONFLICT")


def test_failing_gate_refuses_the_request(team: Team) -> None:
    v = make_version(team.alice, MODEL, {"accuracy": 0.8})
    _policy(team.admin, gates=["accuracy >= 0.9", "f1 >= 0.5"])
    err = error(transition(team.alice, MODEL, v, "Production"), 409, "GATE_FAILED")
    assert "accuracy is 0.8: fails accuracy >= 0.9" in err["message"]
    assert "no usable metric 'f1'" in err["message"]
    assert [g["passed"] for g in err["details"]["gates"]] == [False, False]
    assert team.admin.get("/approval-requests").json()["items"] == []
    assert stage_of(team.admin, MODEL, v) == "None"


def test_beat_production_gate_compares_with_the_current_production_version(team: Team) -> None:
    v1 = make_version(team.alice, MODEL, {"f1": 0.90, "loss": 0.3})
    assert transition(team.alice, MODEL, v1, "Production").status_code == 200
    _policy(team.admin, gates=["f1 > production", "loss <= production"])
    worse = make_version(team.alice, MODEL, {"f1": 0.85, "loss": 0.2})
    err = error(transition(team.alice, MODEL, worse, "Production"), 409, "GATE_FAILED")
    assert "does not beat Production version 1" in err["message"]

    better = make_version(team.alice, MODEL, {"f1": 0.95, "loss": 0.25})
    r = transition(team.alice, MODEL, better, "Production", archive_existing=True)
    assert r.status_code == 202, r.text
    rid = r.json()["pending_request"]["id"]
    detail = team.bob.get(f"/approval-requests/{rid}").json()
    assert detail["archive_existing"] is True
    assert [g["passed"] for g in detail["gate_results"]] == [True, True]
    assert detail["gate_results"][0]["compared_to"] == 0.9
    assert detail["metrics"]["production_version"] == v1
    assert detail["metrics"]["production_metrics"] == {"f1": 0.9, "loss": 0.3}
    assert detail["metrics"]["metrics"] == {"f1": 0.95, "loss": 0.25}

    assert team.bob.post(f"/approval-requests/{rid}/approve", json={}).json()["status"] == (
        "approved"
    )
    assert stage_of(team.admin, MODEL, better) == "Production"
    assert stage_of(team.admin, MODEL, v1) == "Archived"  # archive_existing honoured


BAD_GATES = [
    ("accuracy", "no comparison operator"),
    (">= 0.9", "no metric name"),
    ("accuracy >=", "nothing follows the operator"),
    ("accuracy => 0.9", "operator is not one of"),
    ("accuracy >= high", "'high' is neither a number nor 'production'"),
    ("accuracy >= 0.9 and f1 > 0.8", "a gate holds one condition"),
    ("accuracy == production", "compare with production using"),
    ("accuracy >= inf", "finite number"),
    ("", "it is empty"),
    ("acc$uracy >= 1", "metric name has characters"),
]


def test_invalid_gate_expressions_are_refused(team: Team) -> None:
    make_version(team.alice, MODEL)
    _policy(team.admin, gates=["accuracy >= 0.5"])
    for gate, problem in BAD_GATES:
        r = team.admin.put(
            f"/registered-models/{MODEL}/approval-policy",
            json={"gated_stages": ["Production"], "gates": ["f1 > 0.1", gate]},
        )
        err = error(r, 422, "VALIDATION_ERROR")
        assert problem in err["message"] and "Gate 2" in err["message"], (gate, err)
        assert err["details"]["gate"] == gate
    policy = team.admin.get(f"/registered-models/{MODEL}/approval-policy").json()
    assert policy["gates"] == ["accuracy >= 0.5"]  # unchanged


def test_gate_expressions_are_normalised(team: Team) -> None:
    make_version(team.alice, MODEL)
    r = team.admin.put(
        f"/registered-models/{MODEL}/approval-policy",
        json={
            "gated_stages": ["production", "STAGING"],
            "gates": ["  accuracy>=0.90 ", "`val loss` < Production", "accuracy >= 0.9"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["gates"] == ["accuracy >= 0.9", "`val loss` < production"]
    assert r.json()["gated_stages"] == ["Staging", "Production"]


BAD_POLICIES: list[tuple[dict[str, object], str]] = [
    ({"reviewers": ["nobody"]}, "Unknown user(s) in reviewers: 'nobody'"),
    ({"reviewer_groups": ["ghosts"]}, "Unknown reviewer group(s): 'ghosts'"),
    ({"reviewers": ["bob"], "required_approvals": 2}, "only 1 active user"),
    ({"required_approvals": 0}, "at least 1"),
    ({"gated_stages": ["Prod"]}, "Unknown stage 'Prod'"),
    ({"colour": "red"}, "Extra inputs"),
]


def test_bad_policies_are_refused(team: Team) -> None:
    make_version(team.alice, MODEL)
    for body, needle in BAD_POLICIES:
        r = team.admin.put(f"/registered-models/{MODEL}/approval-policy", json=body)
        err = error(r, 422, "VALIDATION_ERROR")
        assert needle in err["message"], (body, err["message"])
    policy = team.admin.get(f"/registered-models/{MODEL}/approval-policy").json()
    assert policy["source"] == "default"


def test_only_admins_manage_policies_and_groups(team: Team) -> None:
    make_version(team.alice, MODEL)
    error(
        team.alice.put("/approval-policy", json={"gated_stages": ["Production"]}),
        403,
        "PERMISSION_DENIED",
    )
    error(
        team.alice.put(f"/registered-models/{MODEL}/approval-policy", json={}),
        403,
        "PERMISSION_DENIED",
    )
    error(team.alice.post("/groups", json={"name": "g"}), 403, "PERMISSION_DENIED")
    error(team.admin.put("/registered-models/nope/approval-policy", json={}), 404, "NOT_FOUND")
    assert team.alice.get("/approval-policy").json()["gated_stages"] == []


def test_default_policy_applies_to_every_model_until_a_model_has_its_own(team: Team) -> None:
    v = make_version(team.alice, MODEL)
    r = team.admin.put("/approval-policy", json={"gated_stages": ["Staging"], "reviewers": ["bob"]})
    assert r.status_code == 200, r.text
    assert transition(team.alice, MODEL, v, "Staging").status_code == 202
    team.admin.put(f"/registered-models/{MODEL}/approval-policy", json={"gated_stages": []})
    listed = team.admin.get("/approval-policies").json()["items"]
    assert [(p["model_name"], p["source"]) for p in listed] == [(None, "default"), (MODEL, "model")]
    # The pending request (opened under the default) stays; cancel it and move freely.
    rid = team.alice.get("/approval-requests").json()["items"][0]["id"]
    assert team.alice.post(f"/approval-requests/{rid}/cancel", json={}).status_code == 200
    assert transition(team.alice, MODEL, v, "Staging").status_code == 200
    r = team.admin.delete(f"/registered-models/{MODEL}/approval-policy")
    assert r.json()["source"] == "default" and r.json()["gated_stages"] == ["Staging"]
    error(team.admin.delete(f"/registered-models/{MODEL}/approval-policy"), 404, "NOT_FOUND")


def test_cancel_by_requester_or_admin_only(team: Team) -> None:
    v, rid = _pending(team)
    err = error(team.dave.post(f"/approval-requests/{rid}/cancel"), 403, "PERMISSION_DENIED")
    assert "Only the requester (alice)" in err["message"]
    error(team.bob.post(f"/approval-requests/{rid}/cancel"), 403, "PERMISSION_DENIED")
    r = team.alice.post(f"/approval-requests/{rid}/cancel", json={"comment": "wrong version"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    error(team.bob.post(f"/approval-requests/{rid}/approve", json={}), 409, "CONFLICT")
    assert stage_of(team.admin, MODEL, v) == "Staging"
    # Now a new request can be opened for the version.
    assert transition(team.alice, MODEL, v, "Production").status_code == 202


def test_repeated_transition_points_at_the_same_pending_request(team: Team) -> None:
    v, rid = _pending(team)
    again = transition(team.alice, MODEL, v, "Production")
    assert again.status_code == 202 and again.json()["pending_request"]["id"] == rid
    assert "already waits in" in again.json()["pending_request"]["message"]
    r = team.alice.post(
        "/approval-requests", json={"model_name": MODEL, "version": v, "stage": "Production"}
    )
    err2 = error(r, 409, "CONFLICT")
    assert rid in err2["message"] and err2["details"]["request_id"] == rid
    assert len(team.admin.get("/approval-requests").json()["items"]) == 1


def test_request_that_could_never_be_approved_is_refused(team: Team) -> None:
    v = make_version(team.alice, MODEL)
    _policy(team.admin, reviewers=["alice"], required_approvals=1)
    err = error(transition(team.alice, MODEL, v, "Production"), 409, "CONFLICT")
    assert "could never be approved" in err["message"]
    assert team.admin.get("/approval-requests").json()["items"] == []


def test_explicit_request_for_an_ungated_stage_goes_to_the_admins(team: Team) -> None:
    v = make_version(team.alice, MODEL, {"accuracy": 0.9})
    r = team.alice.post(
        "/approval-requests",
        json={
            "model_name": MODEL,
            "version": f"models:/{MODEL}/{v}",
            "stage": "staging",
            "note": "please check",
        },
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert r.json()["reviewers"] == ["admin"] and r.json()["to_stage"] == "Staging"
    r = team.admin.post(f"/approval-requests/{rid}/approve", json={"comment": "ok"})
    assert r.json()["status"] == "approved"
    assert stage_of(team.admin, MODEL, v) == "Staging"


BAD_REQUESTS: list[tuple[dict[str, object], int, str, str]] = [
    (
        {"model_name": MODEL, "version": 1, "stage": "Live"},
        422,
        "VALIDATION_ERROR",
        "Unknown stage",
    ),
    ({"model_name": MODEL, "version": 99, "stage": "Staging"}, 404, "NOT_FOUND", "no version 99"),
    ({"model_name": "ghost", "version": 1, "stage": "Staging"}, 404, "NOT_FOUND", "ghost"),
    ({"model_name": MODEL, "version": 1, "stage": "None"}, 409, "CONFLICT", "already in None"),
    (
        {"model_name": MODEL, "version": 1, "stage": "Archived", "archive_existing": True},
        422,
        "VALIDATION_ERROR",
        "archive_existing applies",
    ),
    (
        {"model_name": MODEL, "version": 0, "stage": "Staging"},
        422,
        "VALIDATION_ERROR",
        "positive integer",
    ),
]


def test_bad_requests_are_refused(team: Team) -> None:
    make_version(team.alice, MODEL)
    for body, status, code, needle in BAD_REQUESTS:
        err = error(team.alice.post("/approval-requests", json=body), status, code)
        assert needle in err["message"], (body, err["message"])
    assert team.admin.get("/approval-requests").json()["items"] == []


def test_viewers_cannot_request(team: Team) -> None:
    v = make_version(team.alice, MODEL)
    r = team.carol.post(
        "/approval-requests", json={"model_name": MODEL, "version": v, "stage": "Staging"}
    )
    error(r, 403, "PERMISSION_DENIED")


def test_comment_thread_and_notifications(team: Team) -> None:
    _, rid = _pending(team)
    r = team.dave.post(f"/approval-requests/{rid}/comments", json={"body": "Eval set size?"})
    assert r.status_code == 201 and r.json()["author"] == "dave"
    error(
        team.dave.post(f"/approval-requests/{rid}/comments", json={"body": "  "}),
        422,
        "VALIDATION_ERROR",
    )
    error(
        team.dave.post("/approval-requests/apr-nope/comments", json={"body": "x"}), 404, "NOT_FOUND"
    )
    team.alice.post(f"/approval-requests/{rid}/comments", json={"body": "50k reviews"})
    thread = team.bob.get(f"/approval-requests/{rid}").json()["comments"]
    assert [(c["author"], c["kind"]) for c in thread] == [
        ("alice", "request"),
        ("dave", "comment"),
        ("alice", "comment"),
    ]
    kinds = [n["kind"] for n in team.alice.get("/notifications").json()["items"]]
    assert kinds == ["approval.comment"]  # dave's comment; not her own
    assert [n["kind"] for n in team.dave.get("/notifications").json()["items"]] == [
        "approval.comment"
    ]


def test_listing_filters_and_history(team: Team) -> None:
    v, rid = _pending(team)
    team.bob.post(f"/approval-requests/{rid}/reject", json={"comment": "not yet"})
    r2 = transition(team.alice, MODEL, v, "Production")
    rid2 = r2.json()["pending_request"]["id"]

    def ids(**params: object) -> list[str]:
        r = team.bob.get("/approval-requests", params=params)
        return [x["id"] for x in r.json()["items"]]

    assert ids() == [rid2, rid]
    assert ids(status="pending") == [rid2]
    assert ids(status=["rejected", "approved"]) == [rid]
    assert ids(model_name="other") == []
    assert ids(requester="alice", limit=1) == [rid2]
    page = team.bob.get("/approval-requests", params={"limit": 1}).json()
    nxt = team.bob.get(
        "/approval-requests", params={"limit": 1, "page_token": page["next_page_token"]}
    ).json()
    assert [x["id"] for x in nxt["items"]] == [rid] and nxt["next_page_token"] is None
    err = error(
        team.bob.get("/approval-requests", params={"status": "open"}), 422, "VALIDATION_ERROR"
    )
    assert "pending, approved, rejected, cancelled, stale" in err["message"]
    error(team.bob.get("/approval-requests/apr-missing"), 404, "NOT_FOUND")


def test_groups(team: Team) -> None:
    r = team.admin.post("/groups", json={"name": "ml-leads", "members": ["bob"]})
    assert r.status_code == 201 and r.json()["members"] == ["bob"]
    error(team.admin.post("/groups", json={"name": "ml-leads"}), 409, "CONFLICT")
    error(team.admin.post("/groups", json={"name": "bad name!"}), 422, "VALIDATION_ERROR")
    err = error(
        team.admin.post("/groups", json={"name": "x", "members": ["zed"]}), 422, "VALIDATION_ERROR"
    )
    assert "'zed'" in err["message"]
    assert team.admin.post("/groups/ml-leads/members", json={"username": "carol"}).json()[
        "members"
    ] == ["bob", "carol"]
    error(team.admin.post("/groups/ml-leads/members", json={"username": "zed"}), 404, "NOT_FOUND")
    error(
        team.alice.post("/groups/ml-leads/members", json={"username": "dave"}),
        403,
        "PERMISSION_DENIED",
    )
    assert team.alice.get("/groups").json()["items"][0]["members"] == ["bob", "carol"]

    make_version(team.alice, MODEL)
    _policy(team.admin, reviewers=[], reviewer_groups=["ml-leads"])
    err = error(team.admin.delete("/groups/ml-leads"), 409, "CONFLICT")
    assert f"model '{MODEL}'" in err["message"]
    assert team.admin.delete("/groups/ml-leads/members/bob").json()["members"] == ["carol"]
    error(team.admin.delete("/groups/ml-leads/members/bob"), 404, "NOT_FOUND")
    _policy(team.admin, reviewers=["bob"], reviewer_groups=[])
    assert team.admin.delete("/groups/ml-leads").status_code == 204
    error(team.admin.get("/groups/ml-leads"), 404, "NOT_FOUND")


def test_group_members_review_and_quorum_counts_distinct_people(team: Team) -> None:
    team.admin.post("/groups", json={"name": "leads", "members": ["bob", "carol"]})
    v, rid = _pending(team, reviewers=["bob"], reviewer_groups=["leads"], required_approvals=2)
    assert team.bob.post(f"/approval-requests/{rid}/approve", json={}).json()["approvals"] == 1
    err = error(team.bob.post(f"/approval-requests/{rid}/approve", json={}), 409, "CONFLICT")
    assert "already approved" in err["message"]
    assert team.carol.post(f"/approval-requests/{rid}/approve", json={}).json()["status"] == (
        "approved"
    )
    assert stage_of(team.admin, MODEL, v) == "Production"
