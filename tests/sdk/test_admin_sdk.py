"""Users, tokens and audit through the SDK, on both backends (embedded and a live server)."""

from __future__ import annotations

import pytest

from podstack import MLOpsClient
from podstack.errors import Conflict, NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from podstack.schemas.audit import AuditEventOut
from podstack.schemas.auth import TokenCreated, TokenOut, UserOut
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import LiveServer


def test_whoami(client: MLOpsClient) -> None:
    me = client.whoami()
    if client.embedded:
        assert (me.username, me.role, me.via) == ("local", "admin", "local")
    else:
        assert (me.username, me.role, me.via) == ("admin", "admin", "token")


def test_user_lifecycle(client: MLOpsClient) -> None:
    user = client.create_user("nina", "editor", email="nina@example.com", password="long-enough")
    assert isinstance(user, UserOut)
    assert (user.username, user.role, user.has_password) == ("nina", "editor", True)
    assert [u.username for u in client.list_users()] == ["admin", "nina"]
    user = client.update_user("nina", role="viewer", display_name="Nina")
    assert (user.role, user.display_name, user.email) == ("viewer", "Nina", "nina@example.com")
    user = client.update_user("nina", email=None, disabled=True)
    assert user.email is None and user.disabled is True
    assert client.get_user("nina").disabled is True

    with pytest.raises(Conflict, match="already exists"):
        client.create_user("nina")
    with pytest.raises(ValidationFailed, match="viewer, editor, admin"):
        client.create_user("otto", "owner")
    with pytest.raises(NotFound):
        client.get_user("ghost")


def test_tokens_and_audit(client: MLOpsClient, live_server: LiveServer) -> None:
    client.create_user("olga", "editor")
    created = client.create_token("ci", expires_in_days=30, username="olga")
    assert isinstance(created, TokenCreated)
    assert created.token.startswith("pst_") and created.username == "olga"
    assert created.expires_at is not None and created.status == "active"

    # The new token is a working credential against the live server.
    with MLOpsClient(api_token=created.token, url=live_server.url) as olga:
        assert olga.whoami().username == "olga"
        mine = olga.create_token("laptop")
        assert [t.name for t in olga.list_tokens()] == ["ci", "laptop"]
        with pytest.raises(PermissionDenied):
            olga.list_tokens(all_users=True)
        with pytest.raises(PermissionDenied):
            olga.list_users()
        olga.revoke_token(mine.id)

    listed = client.list_tokens(username="olga")
    assert all(isinstance(t, TokenOut) for t in listed)
    assert {t.name: t.status for t in listed} == {"ci": "active", "laptop": "revoked"}
    assert "olga" in {t.username for t in client.list_tokens(all_users=True)}
    revoked = client.revoke_token(created.id)
    assert revoked.status == "revoked"
    with (
        MLOpsClient(api_token=created.token, url=live_server.url) as olga,
        pytest.raises(Unauthenticated, match="revoked"),
    ):
        olga.whoami()

    events = client.list_audit_events(target_type="token")
    assert all(isinstance(e, AuditEventOut) for e in events)
    assert [e.action for e in events][:2] == ["token.revoke", "token.revoke"]
    assert client.list_audit_events(action="user.create", max_results=1)[0].target_id == "olga"


def test_embedded_local_admin_must_name_the_token_owner(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Embedded mode acts as the account-less local admin, so "my token" has no owner.
    monkeypatch.delenv("PODSTACK_URL", raising=False)
    monkeypatch.setenv("PODSTACK_HOME", str(settings.home))
    monkeypatch.setenv("PODSTACK_DATABASE_URL", settings.database_url)
    with MLOpsClient() as client:
        with pytest.raises(ValidationFailed, match="username"):
            client.create_token("mine")
        with pytest.raises(ValidationFailed, match="username"):
            client.list_tokens()
        assert client.create_token("for-admin", username="admin").username == "admin"
