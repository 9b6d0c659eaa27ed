"""Approvals govern what is served, on every path: production endpoints serve only versions
in Production or approved for them (deploy, update, rollback, alias moves), only admins may
deploy pickles to a trusted target, and status messages carry no server paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.deployments.models import Deployment
from tests.server.approvals.helpers import make_user

MODEL = "m"


def _err(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    return dict(err)


def _pending_error(r: httpx.Response) -> str:
    err = _err(r, 409, "APPROVAL_PENDING")
    rid = err["details"]["request_id"]
    assert rid in err["message"] and "Nothing changed" in err["message"]
    return str(rid)


class Team:
    def __init__(self, api: httpx.Client, alice: httpx.Client, bob: httpx.Client) -> None:
        self.admin, self.alice, self.bob = api, alice, bob


@pytest.fixture
def team(
    api: httpx.Client,
    db: Database,
    client_for: Callable[[str], httpx.Client],
    register: Any,
    sk_model: Any,
    sk_model_inverted: Any,
) -> Team:
    """v1 in Production, v2 unstaged; alice (editor) deploys, bob reviews."""
    register(MODEL, sk_model)
    register(MODEL, sk_model_inverted)
    r = api.post(f"/registered-models/{MODEL}/versions/1/stage", json={"stage": "Production"})
    assert r.status_code == 200, r.text
    t = Team(
        api,
        client_for(make_user(db, "alice", "editor")),
        client_for(make_user(db, "bob", "editor")),
    )
    r = api.put(f"/registered-models/{MODEL}/approval-policy", json={"reviewers": ["bob"]})
    assert r.status_code == 200, r.text
    return t


def _deploy(c: httpx.Client, **kw: Any) -> httpx.Response:
    body = {"model_name": MODEL, "version": 1, "endpoint_name": "prod-api", **kw}
    return c.post("/deployments", json=body)


def test_production_endpoint_deploys_and_rolls_only_through_approval(team: Team) -> None:
    # Creating a production endpoint with an unstaged version opens a request; nothing exists.
    rid = _pending_error(_deploy(team.alice, version=2, production=True))
    assert team.admin.get("/deployments").json()["items"] == []
    req = team.bob.get(f"/approval-requests/{rid}").json()
    assert (req["kind"], req["subject"], req["version"]) == ("deployment", "deployment:prod-api", 2)
    assert req["status"] == "pending" and req["requester"] == "alice"
    with httpx.Client(base_url=str(team.admin.base_url).rstrip("/").removesuffix("/api/v1")) as web:
        page = web.get(f"/approvals/{rid}", headers=dict(team.admin.headers))
    assert page.status_code == 200 and 'data-request-kind="deployment"' in page.text
    r = team.alice.post(f"/approval-requests/{rid}/cancel", json={})
    assert r.status_code == 200, r.text

    # With the Production version it deploys at once.
    r = _deploy(team.alice, version=1, production=True)
    assert r.status_code == 201, r.text
    assert r.json()["production"] is True

    # Rolling it to v2: 409 with the request id, the deployment unchanged; asking again
    # finds the same request.
    rid = _pending_error(team.alice.patch("/deployments/prod-api", json={"version": 2}))
    assert _pending_error(team.alice.patch("/deployments/prod-api", json={"version": 2})) == rid
    assert team.admin.get("/deployments/prod-api").json()["target_version"] == 1
    # Admins are held to it too (as for gated stages).
    assert _pending_error(team.admin.patch("/deployments/prod-api", json={"version": 2})) == rid

    # Editors cannot unmark it to get around the review.
    err = _err(
        team.alice.patch("/deployments/prod-api", json={"production": False}),
        403,
        "PERMISSION_DENIED",
    )
    assert "Only an admin can unmark" in err["message"]
    assert team.admin.get("/deployments/prod-api").json()["production"] is True
    # Nor delete it (to re-create it unmarked under the same name).
    err = _err(team.alice.delete("/deployments/prod-api"), 403, "PERMISSION_DENIED")
    assert "Only an admin can delete production endpoint" in err["message"]
    assert team.admin.get("/deployments/prod-api").status_code == 200

    # Approval carries the change out as the requester's.
    r = team.bob.post(f"/approval-requests/{rid}/approve", json={})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    dep = team.admin.get("/deployments/prod-api").json()
    assert dep["target_version"] == 2 and dep["production"] is True
    audit = team.admin.get("/audit", params={"target_type": "deployment"}).json()["items"]
    assert any((e.get("after") or {}).get("approval_request") == rid for e in audit)


def test_rollback_of_a_production_endpoint_needs_approval(team: Team, db: Database) -> None:
    assert _deploy(team.alice, version=1, production=True).status_code == 201
    with db.session() as s:  # as if it had served v2 before (rollouts are not under test)
        d = s.query(Deployment).filter_by(name="prod-api").one()
        d.previous_version = 2
    rid = _pending_error(team.alice.post("/deployments/prod-api/rollback"))
    assert team.admin.get("/deployments/prod-api").json()["target_version"] == 1
    req = team.bob.get(f"/approval-requests/{rid}").json()
    assert req["action"]["operation"] == "rollback" and req["version"] == 2


def test_moving_an_alias_a_production_endpoint_follows_needs_approval(team: Team) -> None:
    r = team.admin.put(f"/registered-models/{MODEL}/aliases/champion", json={"version": 1})
    assert r.status_code == 200, r.text
    r = _deploy(team.alice, version=None, alias="champion", production=True)
    assert r.status_code == 201, r.text

    rid = _pending_error(
        team.alice.put(f"/registered-models/{MODEL}/aliases/champion", json={"version": 2})
    )
    assert team.admin.get(f"/registered-models/{MODEL}/aliases/champion").json()["version"] == 1
    assert team.admin.get("/deployments/prod-api").json()["target_version"] == 1
    req = team.bob.get(f"/approval-requests/{rid}").json()
    assert req["kind"] == "alias" and req["action"]["endpoints"] == ["prod-api"]

    r = team.bob.post(f"/approval-requests/{rid}/approve", json={})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    assert team.admin.get(f"/registered-models/{MODEL}/aliases/champion").json()["version"] == 2
    assert team.admin.get("/deployments/prod-api").json()["target_version"] == 2


def test_non_production_endpoints_are_unchanged(team: Team) -> None:
    assert _deploy(team.alice, version=2, endpoint_name="dev-api").status_code == 201
    r = team.alice.patch("/deployments/dev-api", json={"version": 1})
    assert r.status_code == 200 and r.json()["production"] is False
    assert team.admin.get("/approval-requests").json()["items"] == []


def test_only_admins_deploy_pickles_to_a_trusted_target(
    api: httpx.Client,
    db: Database,
    client_for: Callable[[str], httpx.Client],
    register: Any,
    sk_model: Any,
) -> None:
    register("pk", sk_model, format="sklearn")  # a pickle only
    r = api.put(
        "/deployment-targets/local", json={"kind": "local", "config": {"trusted_formats": True}}
    )
    assert r.status_code == 200, r.text
    editor = client_for(make_user(db, "ed", "editor"))
    body = {"model_name": "pk", "version": 1, "endpoint_name": "pk-api"}
    err = _err(editor.post("/deployments", json=body), 403, "PERMISSION_DENIED")
    assert "only an admin may deploy it" in err["message"]
    assert err["details"]["reason"] == "pickle_needs_admin"
    assert api.get("/deployments").json()["items"] == []
    r = api.post("/deployments", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "sklearn"


def test_status_messages_carry_no_server_paths(
    api: httpx.Client, sdk: MLOpsClient, db: Database, settings: Settings, team: Team
) -> None:
    assert _deploy(team.alice, version=1, endpoint_name="dev-api").status_code == 201
    # Stopped, so the manager leaves the messages written below alone.
    assert api.post("/deployments/dev-api/stop").status_code == 200
    art = settings.artifacts_uri.removeprefix("file://")
    leak = (
        f"model server exited: FileNotFoundError: {settings.home}/deployments/dev-api/x.onnx "
        f"(blob {art}/blobs/sha256/ab/cd) see /home/podstack/.cache/y"
    )
    with db.session() as s:
        d = s.query(Deployment).filter_by(name="dev-api").one()
        d.status_reason = leak
        d.rollout = {"status": "failed", "reason": leak, "to_version": 1}
        d.health = [{"at": "2026-01-01T00:00:00+00:00", "ok": False, "message": leak}]
    for c in (team.alice, api):
        dep = c.get("/deployments/dev-api").json()
        texts = [dep["status_reason"], dep["rollout"]["reason"]]
        texts += [h["message"] for h in dep["health_history"] if "exited" in (h["message"] or "")]
        assert len(texts) == 3, dep
        for text in texts:
            assert str(settings.home) not in text and art not in text, text
            assert "/home/podstack" not in text, text
            assert "FileNotFoundError" in text and "$PODSTACK_HOME/deployments/dev-api" in text


def test_editor_alias_move_cannot_roll_an_endpoint_onto_a_pickle(
    api: httpx.Client,
    db: Database,
    client_for: Callable[[str], httpx.Client],
    register: Any,
    sk_model: Any,
) -> None:
    register("pk", sk_model)  # v1: ONNX
    register("pk", sk_model, format="sklearn")  # v2: a pickle only
    r = api.put(
        "/deployment-targets/local", json={"kind": "local", "config": {"trusted_formats": True}}
    )
    assert r.status_code == 200, r.text
    editor = client_for(make_user(db, "ed", "editor"))
    assert editor.put("/registered-models/pk/aliases/dev", json={"version": 1}).status_code == 200
    body = {"model_name": "pk", "alias": "dev", "endpoint_name": "pk-api"}
    assert editor.post("/deployments", json=body).status_code == 201
    r = editor.put("/registered-models/pk/aliases/dev", json={"version": 2})
    assert _err(r, 403, "PERMISSION_DENIED")["details"]["reason"] == "pickle_needs_admin"
    assert api.get("/registered-models/pk/aliases/dev").json()["version"] == 1
    assert api.get("/deployments/pk-api").json()["target_version"] == 1
    r = api.put("/registered-models/pk/aliases/dev", json={"version": 2})  # an admin may
    assert r.status_code == 200, r.text
    assert api.get("/deployments/pk-api").json()["target_version"] == 2
