"""Failing gates are reported in one readable message (issue 14: they used to read ".;")."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx

from podstack.server.approvals import gates
from podstack.server.db.session import Database
from tests.server.approvals.helpers import error, make_user, make_version, transition

MODEL = "churn"


def test_two_failing_gates_make_one_punctuated_message(
    api: httpx.Client, db: Database, client_for: Callable[[str], httpx.Client]
) -> None:
    alice = client_for(make_user(db, "alice", "editor"))
    make_user(db, "bob", "editor")
    v = make_version(alice, MODEL, {"accuracy": 0.8})
    assert transition(alice, MODEL, v, "Staging").status_code == 200
    r = api.put(
        f"/registered-models/{MODEL}/approval-policy",
        json={
            "gated_stages": ["Production"],
            "reviewers": ["bob"],
            "gates": ["accuracy >= 0.9", "f1 >= 0.5"],
        },
    )
    assert r.status_code == 200, r.text
    err = error(transition(alice, MODEL, v, "Production"), 409, "GATE_FAILED")
    assert err["message"] == (
        f"Version {v} of 'churn' does not meet the approval gates for Production: "
        "accuracy is 0.8: fails accuracy >= 0.9. "
        "The version has no usable metric 'f1'. Gates read the source run's metrics once the "
        "run has ended, and validation metrics logged by someone other than the requester; "
        "have a reviewer or an evaluation job log it, or end the run."
    )
    assert ".;" not in err["message"]
    assert [g["passed"] for g in err["details"]["gates"]] == [False, False]


def test_failure_summary_ends_every_message_once() -> None:
    results = gates.evaluate_all(["a >= 1", "b < 0"], {"a": 0.5, "b": 2.0}, None)
    assert gates.failure_summary(results) == "a is 0.5: fails a >= 1. b is 2: fails b < 0."
    # A message without its own period still ends with exactly one.
    bare = dataclasses.replace(results[0], message="no period")
    assert gates.failure_summary([bare]) == "no period."
