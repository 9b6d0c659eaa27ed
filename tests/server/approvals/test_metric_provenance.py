"""Gates read only metrics the requester cannot have written: an ended source run's metrics
and validation metrics logged by someone else. The request (API and page) shows who logged
each metric and when."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from podstack.server.db.session import Database
from tests.conftest import LiveServer
from tests.server.approvals.helpers import error, make_user, make_version, stage_of, transition

MODEL = "fraud"


@dataclass
class Team:
    admin: httpx.Client
    alice: httpx.Client  # requester (editor)
    bob: httpx.Client  # reviewer (editor)
    eve: httpx.Client  # evaluation job (editor, not a reviewer)
    alice_token: str


@pytest.fixture
def team(api: httpx.Client, db: Database, client_for: Callable[[str], httpx.Client]) -> Team:
    alice = make_user(db, "alice", "editor")
    return Team(
        admin=api,
        alice=client_for(alice),
        bob=client_for(make_user(db, "bob", "editor")),
        eve=client_for(make_user(db, "eve", "editor")),
        alice_token=alice,
    )


def _policy(api: httpx.Client, gates: list[str]) -> None:
    doc = {"gated_stages": ["Production"], "reviewers": ["bob"], "gates": gates}
    r = api.put(f"/registered-models/{MODEL}/approval-policy", json=doc)
    assert r.status_code == 200, r.text


def _log(c: httpx.Client, version: int, **metrics: float) -> None:
    r = c.post(f"/registered-models/{MODEL}/versions/{version}/metrics", json={"metrics": metrics})
    assert r.status_code in (200, 204), r.text


def test_requester_written_validation_metric_does_not_pass_a_gate(team: Team) -> None:
    v = make_version(team.alice, MODEL, {"f1": 0.5})
    _policy(team.admin, ["f1 >= 0.9"])
    _log(team.alice, v, f1=0.93)  # the requester grades their own homework
    err = error(transition(team.alice, MODEL, v, "Production"), 409, "GATE_FAILED")
    assert "f1 is 0.5: fails f1 >= 0.9" in err["message"]  # the run's value, not 0.93
    assert team.admin.get("/approval-requests").json()["items"] == []
    assert stage_of(team.admin, MODEL, v) == "None"


def test_someone_elses_validation_metric_counts_and_provenance_is_shown(
    team: Team, live_server: LiveServer
) -> None:
    v = make_version(team.alice, MODEL, {"f1": 0.5})
    _policy(team.admin, ["f1 >= 0.9"])
    _log(team.eve, v, f1=0.93)
    r = transition(team.alice, MODEL, v, "Production")
    assert r.status_code == 202, r.text
    rid = r.json()["pending_request"]["id"]
    detail = team.bob.get(f"/approval-requests/{rid}").json()
    assert detail["metrics"]["metrics"] == {"f1": 0.93}
    prov = {(p["source"], p["key"]): p for p in detail["metrics"]["provenance"]}
    assert prov[("validation", "f1")]["logged_by"] == "eve"
    assert prov[("validation", "f1")]["logged_at"] and prov[("validation", "f1")]["counted"]
    assert prov[("run", "f1")]["logged_by"] == "alice" and prov[("run", "f1")]["run_id"]
    assert prov[("run", "f1")]["value"] == 0.5

    # The page reviewers read shows the same provenance (the UI accepts bearer tokens).
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {team.alice_token}"}
    ) as web:
        page = web.get(f"/approvals/{rid}")
    assert page.status_code == 200, page.text
    assert "Metric provenance" in page.text and "data-metric-provenance" in page.text
    assert 'data-provenance="f1" data-source="validation" data-counted="yes"' in page.text
    assert "<td data-logged-by>eve</td>" in page.text

    # The requester overwrites the metric after asking: the gate now fails at approval.
    _log(team.alice, v, f1=0.99)
    err = error(team.bob.post(f"/approval-requests/{rid}/approve", json={}), 409, "CONFLICT")
    assert "Gate now fails" in err["message"]
    assert team.bob.get(f"/approval-requests/{rid}").json()["status"] == "stale"
    assert stage_of(team.admin, MODEL, v) == "None"


def test_metrics_of_a_run_still_running_do_not_count(team: Team) -> None:
    v = make_version(team.alice, MODEL, {"f1": 0.95}, end_run=False)
    _policy(team.admin, ["f1 >= 0.9"])
    err = error(transition(team.alice, MODEL, v, "Production"), 409, "GATE_FAILED")
    assert "no usable metric 'f1'" in err["message"]
    assert stage_of(team.admin, MODEL, v) == "None"


def test_requester_cannot_lower_production_to_beat_it(team: Team) -> None:
    v1 = make_version(team.alice, MODEL, {"f1": 0.90})
    assert transition(team.admin, MODEL, v1, "Production").status_code == 200
    _policy(team.admin, ["f1 > production"])
    v2 = make_version(team.alice, MODEL, {"f1": 0.85})
    _log(team.alice, v1, f1=0.1)  # sabotage the version to beat
    err = error(transition(team.alice, MODEL, v2, "Production"), 409, "GATE_FAILED")
    assert "does not beat Production version 1 (0.9)" in err["message"]
