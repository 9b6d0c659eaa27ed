"""Concurrent decisions: reviewers approving at the same moment apply the transition exactly
once; approvals racing a direct transition or a delete never deadlock and never apply to a
version that moved."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

import httpx

from podstack.server.db.session import Database
from tests.server.approvals.helpers import make_user, make_version, stage_of, transition

MODEL = "race"


def _parallel(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    out: list[httpx.Response | None] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def test_simultaneous_approvals_apply_once(
    api: httpx.Client, db: Database, client_for: Callable[[str], httpx.Client]
) -> None:
    reviewers = [client_for(make_user(db, f"rev{i}", "editor")) for i in range(3)]
    requester = client_for(make_user(db, "req", "editor"))
    for round_ in range(2):
        v = make_version(requester, MODEL)
        api.put(
            f"/registered-models/{MODEL}/approval-policy",
            json={
                "gated_stages": ["Staging"],
                "reviewers": ["rev0", "rev1", "rev2"],
                "required_approvals": 2,
            },
        )
        rid = transition(requester, MODEL, v, "Staging").json()["pending_request"]["id"]
        results = _parallel(
            *[partial(c.post, f"/approval-requests/{rid}/approve", json={}) for c in reviewers]
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 409], [r.text for r in results]  # the third finds it decided
        assert stage_of(api, MODEL, v) == "Staging", round_
        history = api.get(f"/registered-models/{MODEL}/versions/{v}/transitions").json()
        assert [(h["to_stage"], h["request_id"]) for h in history] == [("Staging", rid)]
        assert api.get(f"/approval-requests/{rid}").json()["approvals"] == 2


def test_approval_racing_a_direct_transition(
    api: httpx.Client, db: Database, client_for: Callable[[str], httpx.Client]
) -> None:
    rev = client_for(make_user(db, "rev", "editor"))
    requester = client_for(make_user(db, "req", "editor"))
    for _ in range(3):
        v = make_version(requester, MODEL)
        api.put(
            f"/registered-models/{MODEL}/approval-policy",
            json={"gated_stages": ["Production"], "reviewers": ["rev"]},
        )
        rid = transition(requester, MODEL, v, "Production").json()["pending_request"]["id"]
        approve, archive = _parallel(
            partial(rev.post, f"/approval-requests/{rid}/approve", json={}),
            partial(transition, api, MODEL, v, "Archived"),
        )
        assert archive.status_code == 200, archive.text
        status = api.get(f"/approval-requests/{rid}").json()["status"]
        if approve.status_code == 200:  # approval first, then archived
            assert status == "approved"
        else:  # archived first: the request went stale and the approval was refused
            assert approve.status_code == 409 and status == "stale", approve.text
        assert stage_of(api, MODEL, v) == "Archived"
