"""The invalid-policy cases of the per-model route, run against the global default policy
(``PUT /approval-policy``) too: same 422s and messages, and the default policy, every policy
listed and the audit log are unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from tests.server.approvals.helpers import error, make_user

# The very cases the per-model route is tested with, so the two routes cannot drift apart.
from tests.server.approvals.test_approvals_api import BAD_GATES, BAD_POLICIES

# Bad input is refused before anything is written, by validation and lookups by name: the
# database engine plays no part in the answer (SQLite pass only).
pytestmark = pytest.mark.one_db


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.fixture
def admin(api: httpx.Client, db: Database) -> httpx.Client:
    make_user(db, "bob", "editor", "bob@example.com")  # the one active reviewer of BAD_POLICIES
    r = api.put("/approval-policy", json={"gated_stages": ["Production"], "gates": ["f1 > 0.1"]})
    assert r.status_code == 200, r.text
    return api


def _snapshot(api: httpx.Client) -> tuple[Any, Any]:
    return api.get("/approval-policy").json(), api.get("/approval-policies").json()


@pytest.mark.parametrize(("body", "needle"), BAD_POLICIES, ids=range(len(BAD_POLICIES)))
def test_bad_default_policies_are_refused(
    admin: httpx.Client, db: Database, body: dict[str, object], needle: str
) -> None:
    before, audits = _snapshot(admin), _audit_count(db)
    err = error(admin.put("/approval-policy", json=body), 422, "VALIDATION_ERROR")
    assert needle in err["message"], (body, err["message"])
    assert _snapshot(admin) == before
    assert _audit_count(db) == audits


@pytest.mark.parametrize(("gate", "problem"), BAD_GATES, ids=range(len(BAD_GATES)))
def test_bad_default_gates_are_refused(
    admin: httpx.Client, db: Database, gate: str, problem: str
) -> None:
    before, audits = _snapshot(admin), _audit_count(db)
    r = admin.put(
        "/approval-policy",
        json={"gated_stages": ["Production"], "gates": ["f1 > 0.1", gate]},
    )
    err = error(r, 422, "VALIDATION_ERROR")
    assert problem in err["message"] and "Gate 2" in err["message"], (gate, err)
    assert err["details"]["gate"] == gate
    assert _snapshot(admin) == before
    assert _audit_count(db) == audits


def test_default_policy_body_must_be_an_object(admin: httpx.Client, db: Database) -> None:
    before, audits = _snapshot(admin), _audit_count(db)
    for body in (["Production"], "Production", 3):
        err = error(admin.put("/approval-policy", json=body), 422, "VALIDATION_ERROR")
        assert "dictionary" in err["message"].lower() or "object" in err["message"].lower()
    assert _snapshot(admin) == before
    assert _audit_count(db) == audits


def test_non_admins_cannot_set_the_default_policy(
    admin: httpx.Client,
    anon: httpx.Client,
    db: Database,
    make_token: Callable[[str], str],
    client_for: Callable[[str], httpx.Client],
) -> None:
    editor = client_for(make_token("editor"))
    before, audits = _snapshot(admin), _audit_count(db)
    body = {"gated_stages": []}
    error(editor.put("/approval-policy", json=body), 403, "PERMISSION_DENIED")
    error(anon.put("/approval-policy", json=body), 401, "UNAUTHENTICATED")
    assert _snapshot(admin) == before
    assert _audit_count(db) == audits
