"""Reviewer groups from the company directory: a reviewer group counts the users the identity
provider put in the group of the same name at their last sign-in.

The sign-ins here call ``oidc.sign_in`` with claims as the verified callback hands them over
(the protocol itself is tested against the real provider in test_refusals.py and
tests/browser/test_sso.py); what is checked is the database side, on both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from tests.server.approvals.helpers import make_user, make_version, transition

from podstack.errors import Unauthenticated
from podstack.server.audit.models import AuditEvent
from podstack.server.auth import groups as group_rules
from podstack.server.auth import oidc
from podstack.server.auth import service as auth_service
from podstack.server.auth.models import DirectoryGroup
from podstack.server.config import Settings
from podstack.server.db.session import Database

ISSUER = "https://idp.example.com"
MODEL = "churn"


def _config(settings: Settings) -> oidc.OidcConfig:
    config = oidc.config_of(
        settings.model_copy(
            update={
                "oidc_issuer": ISSUER,
                "oidc_client_id": "podstack",
                "oidc_client_secret": SecretStr("s"),
                "oidc_group_roles": "ml-admins=admin,ml=editor",
            }
        )
    )
    assert config is not None
    return config


def _sign_in(db: Database, settings: Settings, sub: str, username: str, groups: Any) -> str:
    with db.session() as s:
        user = oidc.sign_in(
            s, _config(settings), {"sub": sub, "preferred_username": username, "groups": groups}
        )
        return user.username


def _token(db: Database, username: str) -> str:
    with db.session() as s:
        return auth_service.create_token(s, "test", username, "t").value


def test_directory_group_members_review_and_leaving_the_group_ends_it(
    api: httpx.Client,
    db: Database,
    settings: Settings,
    client_for: Callable[[str], httpx.Client],
) -> None:
    alice = client_for(make_user(db, "alice", "editor"))
    _sign_in(db, settings, "sub-dana", "dana", ["ml-reviewers", "ml"])
    dana = client_for(_token(db, "dana"))

    # The admin names a reviewer group after the provider's group; nobody is added by hand.
    assert api.post("/groups", json={"name": "ml-reviewers"}).status_code == 201
    group = api.get("/groups/ml-reviewers").json()
    assert group["members"] == ["dana"]  # from the directory
    r = api.delete("/groups/ml-reviewers/members/dana")
    assert r.status_code == 409 and "identity provider" in r.json()["error"]["message"]
    version = make_version(alice, MODEL)
    r = api.put(
        f"/registered-models/{MODEL}/approval-policy",
        json={"gated_stages": ["Production"], "reviewer_groups": ["ml-reviewers"]},
    )
    assert r.status_code == 200, r.text

    r = transition(alice, MODEL, version, "Production")
    assert r.status_code == 202, r.text
    request_id = r.json()["pending_request"]["id"]
    assert api.get(f"/approval-requests/{request_id}").json()["reviewers"] == ["dana"]

    # dana leaves the group at the provider; her next sign-in records it.
    _sign_in(db, settings, "sub-dana", "dana", ["ml"])
    r = dana.post(f"/approval-requests/{request_id}/approve", json={})
    assert r.status_code == 403, r.text
    assert "not a designated reviewer" in r.json()["error"]["message"]

    # Back in the group: her approval applies the transition.
    _sign_in(db, settings, "sub-dana", "dana", ["ml", "ml-reviewers"])
    r = dana.post(f"/approval-requests/{request_id}/approve", json={})
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("approved", "applied")


def test_sign_in_records_groups_role_and_audit(db: Database, settings: Settings) -> None:
    _sign_in(db, settings, "sub-eve", "eve", ["ml", "x"])
    with db.session(readonly=True) as s:
        user = auth_service.get_user(s, "eve")
        assert user.role == "editor"
        assert group_rules.groups_of(s, user.id) == ["ml", "x"]
    _sign_in(db, settings, "sub-eve", "eve-renamed", ["ml-admins"])  # username stays
    with db.session(readonly=True) as s:
        user = auth_service.get_user(s, "eve")
        assert user.role == "admin"
        assert group_rules.groups_of(s, user.id) == ["ml-admins"]
        # Groups are kept (for grants to groups), memberships replaced.
        assert sorted(s.scalars(select(DirectoryGroup.name))) == ["ml", "ml-admins", "x"]
        actions = [
            e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.target_id == "eve"))
        ]
    assert actions.count("user.set_groups") == 2
    assert {"user.create", "user.link_identity", "user.set_role"} <= set(actions)


def test_groups_claim_that_is_not_a_list_is_refused(db: Database, settings: Settings) -> None:
    with pytest.raises(Unauthenticated, match="not a list of group names"):
        _sign_in(db, settings, "sub-f", "frank", {"ml": True})
    with db.session(readonly=True) as s:
        assert s.scalar(select(DirectoryGroup.id)) is None
        assert "frank" not in [u.username for u in auth_service.list_users(s)]
