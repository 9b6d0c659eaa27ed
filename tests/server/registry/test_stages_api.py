"""Stages over REST: transitions and their history, archive_existing, "which version was in
Production on date X", the hooks other capabilities plug in (gates, delete guards), audit
records and domain events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.orm import Session

from podstack.errors import Conflict
from podstack.server.db.session import Database
from podstack.server.events import service as events
from podstack.server.registry import hooks
from podstack.server.registry import service as registry
from tests.server.registry.helpers import error, make_run, new_version, state, transition


def _now() -> str:
    time.sleep(0.01)  # keep timestamps strictly ordered on coarse clocks
    at = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    return at


def test_transitions_are_recorded_case_insensitively(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "staged", run)
    v = transition(api, "staged", 1, "staging", note="testing")
    assert v["stage"] == "Staging"
    v = transition(api, "staged", 1, "PRODUCTION")
    assert v["stage"] == "Production"
    hist = api.get("/registered-models/staged/versions/1/transitions").json()
    assert [(t["from_stage"], t["to_stage"], t["actor"], t["note"]) for t in hist] == [
        ("None", "Staging", "admin", "testing"),
        ("Staging", "Production", "admin", None),
    ]
    assert all(t["request_id"] is None for t in hist)
    # Same stage again: nothing happens, nothing is recorded.
    transition(api, "staged", 1, "production")
    assert len(api.get("/registered-models/staged/versions/1/transitions").json()) == 2


def test_archive_existing_archives_previous_production(api: httpx.Client) -> None:
    run = make_run(api)
    for _ in range(3):
        new_version(api, "prom", run)
    transition(api, "prom", 1, "Production")
    transition(api, "prom", 2, "Production")  # without archive_existing both stay
    stages = {
        v["version"]: v["stage"]
        for v in api.get("/registered-models/prom/versions").json()["items"]
    }
    assert stages == {1: "Production", 2: "Production", 3: "None"}
    assert api.get("/registered-models/prom").json()["production_version"]["version"] == 2
    transition(api, "prom", 3, "Production", archive_existing=True, note="v3 wins")
    stages = {
        v["version"]: v["stage"]
        for v in api.get("/registered-models/prom/versions").json()["items"]
    }
    assert stages == {1: "Archived", 2: "Archived", 3: "Production"}
    for n in (1, 2):
        last = api.get(f"/registered-models/prom/versions/{n}/transitions").json()[-1]
        assert (last["from_stage"], last["to_stage"]) == ("Production", "Archived")
        assert "version 3" in last["note"]
    history = api.get("/registered-models/prom/history").json()["items"]
    assert [h["to_stage"] for h in history[:3]].count("Archived") == 2


def test_unknown_stage_lists_the_valid_ones(api: httpx.Client) -> None:
    run = make_run(api)
    new_version(api, "st", run)
    before = state(api)
    for bad in ["Prod", "", "deployed", "None "]:
        if bad == "None ":
            continue  # surrounding spaces are tolerated
        body = error(
            api.post("/registered-models/st/versions/1/stage", json={"stage": bad}),
            422,
            "VALIDATION_ERROR",
            "Unknown stage",
            "None, Staging, Production, Archived",
        )
        assert body["details"]["valid"] == ["None", "Staging", "Production", "Archived"]
    error(
        api.post(
            "/registered-models/st/versions/1/stage",
            json={"stage": "Archived", "archive_existing": True},
        ),
        422,
        "VALIDATION_ERROR",
        "archive_existing",
    )
    error(
        api.post("/registered-models/st/versions/1/stage", json={}),
        422,
        "VALIDATION_ERROR",
        "stage",
    )
    assert state(api) == before


def test_version_by_stage_now_and_at_a_date(api: httpx.Client) -> None:
    run = make_run(api)
    for _ in range(3):
        new_version(api, "timeline", run)
    t0 = _now()
    transition(api, "timeline", 1, "Production")
    t1 = _now()
    transition(api, "timeline", 2, "Production", archive_existing=True)
    t2 = _now()
    transition(api, "timeline", 3, "Production")  # both 2 and 3 in Production: 3 is newest
    t3 = _now()

    def at(when: str | None) -> httpx.Response:
        params = {"at": when} if when else {}
        return api.get("/registered-models/timeline/stages/production", params=params)

    assert at(None).json()["version"] == 3
    error(at(t0), 404, "NOT_FOUND", "no version in stage Production")
    assert at(t1).json()["version"] == 1
    assert at(t2).json()["version"] == 2
    assert at(t3).json()["version"] == 3
    r = api.get("/registered-models/timeline/stages/Archived", params={"at": t2})
    assert r.json()["version"] == 1
    assert (
        api.get("/model-versions/resolve", params={"uri": "models:/timeline/Production"}).json()[
            "version"
        ]
        == 3
    )
    # A version that has since been deleted is named, not silently skipped.
    transition(api, "timeline", 1, "None")
    api.delete("/registered-models/timeline/versions/1")
    error(at(t1), 404, "NOT_FOUND", "version 1", "since been deleted")
    error(
        api.get("/registered-models/timeline/stages/Live"), 422, "VALIDATION_ERROR", "Unknown stage"
    )


def test_model_history_pages_merge_transitions_and_alias_moves(api: httpx.Client) -> None:
    run = make_run(api)
    for _ in range(3):
        new_version(api, "hist", run)
    events_made = 0
    for n in (1, 2, 3):
        transition(api, "hist", n, "Staging")
        api.put("/registered-models/hist/aliases/champion", json={"version": n})
        events_made += 2
    api.delete("/registered-models/hist/aliases/champion")
    events_made += 1
    seen, token = [], None
    while True:
        params: dict = {"limit": 2}
        if token:
            params["page_token"] = token
        page = api.get("/registered-models/hist/history", params=params).json()
        seen += page["items"]
        token = page["next_page_token"]
        if not token:
            break
    assert len(seen) == events_made
    assert seen[0]["type"] == "alias" and seen[0]["alias_action"] == "delete"
    ats = [h["at"] for h in seen]
    assert ats == sorted(ats, reverse=True)
    assert {h["type"] for h in seen} == {"stage", "alias"}
    error(
        api.get("/registered-models/hist/history", params={"page_token": "bad"}), 400, "BAD_REQUEST"
    )


# ---------------------------------------------------------------- hooks


@pytest.fixture
def gate() -> Iterator[list[registry.TransitionProposal]]:
    """A transition gate like the approvals capability's: intercepts moves to Production."""
    seen: list[registry.TransitionProposal] = []

    def fn(s: Session, p: registry.TransitionProposal) -> registry.Interception | None:
        seen.append(p)
        if p.to_stage == "Production":
            return registry.Interception("req-123", "Approval required.", {"reviewers": 2})
        return None

    registry.register_transition_gate(fn)
    yield seen
    hooks.TRANSITION_GATES.remove(fn)


def test_gate_intercepts_and_apply_transition_completes(
    api: httpx.Client, db: Database, gate: list
) -> None:
    run = make_run(api)
    new_version(api, "gated", run)
    r = api.post(
        "/registered-models/gated/versions/1/stage",
        json={"stage": "production", "note": "ship it", "archive_existing": True},
    )
    assert r.status_code == 202, r.text
    assert r.json()["stage"] == "None"
    assert r.json()["pending_request"] == {
        "id": "req-123",
        "message": "Approval required.",
        "details": {"reviewers": 2},
    }
    p = gate[-1]
    assert (p.model_name, p.version, p.from_stage, p.to_stage, p.note, p.archive_existing) == (
        "gated",
        1,
        "None",
        "Production",
        "ship it",
        True,
    )
    assert p.actor == "admin"
    assert api.get("/registered-models/gated/versions/1/transitions").json() == []
    # Not intercepted: applied normally.
    assert transition(api, "gated", 1, "Staging")["stage"] == "Staging"
    # What approvals do on approval: the primitive, with the request id recorded.
    with db.session() as s:
        mv = registry.apply_transition(
            s, "reviewer", "gated", 1, "Production", note="approved", request_id="req-123"
        )
        assert mv.stage == "Production"
    last = api.get("/registered-models/gated/versions/1/transitions").json()[-1]
    assert (last["to_stage"], last["actor"], last["request_id"]) == (
        "Production",
        "reviewer",
        "req-123",
    )


@pytest.fixture
def served() -> Iterator[set[tuple[str, int]]]:
    """A delete guard like deployments': refuses deleting versions it "serves"."""
    serving: set[tuple[str, int]] = set()

    def guard(s: Session, model, versions) -> None:  # type: ignore[no-untyped-def]
        for v in versions:
            if (model.name, v.version) in serving:
                raise Conflict(f"{model.name} v{v.version} is served by deployment 'api'.")

    registry.register_delete_guard(guard)
    yield serving
    hooks.DELETE_GUARDS.remove(guard)


def test_delete_guards_protect_versions_and_models(api: httpx.Client, served: set) -> None:
    run = make_run(api)
    new_version(api, "served", run)
    new_version(api, "served", run)
    served.add(("served", 2))
    before = state(api)
    error(api.delete("/registered-models/served/versions/2"), 409, "CONFLICT", "deployment 'api'")
    error(api.delete("/registered-models/served"), 409, "CONFLICT", "deployment 'api'")
    assert state(api) == before
    assert api.delete("/registered-models/served/versions/1").status_code == 204
    served.clear()
    assert api.delete("/registered-models/served").status_code == 204


# ---------------------------------------------------------------- audit and events


@pytest.fixture
def captured() -> Iterator[list[events.Event]]:
    got: list[events.Event] = []

    def sink(s: Session, e: events.Event) -> None:
        got.append(e)

    events.subscribe(sink)
    yield got
    events._SINKS.remove(sink)


def test_every_mutation_is_audited_and_emitted(api: httpx.Client, captured: list) -> None:
    run = make_run(api)
    api.post("/registered-models", json={"name": "audited", "tags": ["a"]})
    new_version(api, "audited", run)
    new_version(api, "audited", run)
    transition(api, "audited", 1, "Staging")
    api.put("/registered-models/audited/aliases/best", json={"version": 1})
    api.put("/registered-models/audited/aliases/best", json={"version": 2})
    api.delete("/registered-models/audited/aliases/best")
    api.delete("/registered-models/audited/versions/2")
    api.delete("/registered-models/audited")
    types = [e.type for e in captured]
    assert types == [
        "model.created",
        "version.created",
        "version.created",
        "stage.transition_applied",
        "alias.moved",
        "alias.moved",
        "alias.deleted",
        "version.deleted",
        "model.deleted",
    ]
    assert captured[3].payload == {
        "model_name": "audited",
        "version": 1,
        "from_stage": "None",
        "to_stage": "Staging",
        "note": None,
        "request_id": None,
    }
    assert captured[5].payload["previous_version"] == 1
    assert all(e.actor == "admin" for e in captured)
    audit = api.get("/audit", params={"limit": 100}).json()["items"]
    actions = {a["action"] for a in audit}
    assert {
        "model.create",
        "version.create",
        "version.transition",
        "alias.set",
        "alias.delete",
        "version.delete",
        "model.delete",
    } <= actions
