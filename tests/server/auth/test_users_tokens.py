"""Users, API tokens and /me over a real socket: rules, wire shapes and every bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import argon2
import httpx
import pytest
from sqlalchemy import select, text

from podstack.server.audit.models import AuditEvent
from podstack.server.auth import service as auth_service
from podstack.server.auth import token_cache
from podstack.server.auth.models import ApiToken, User
from podstack.server.db.session import Database
from podstack.server.pagination import encode_token
from tests.conftest import ADMIN_TOKEN, PRODUCTION_PASSWORD_HASHER, LiveServer
from tests.http_errors import api_error as _error

MakeToken = Callable[..., str]
ClientFor = Callable[[str], httpx.Client]


def _usernames(db: Database) -> list[str]:
    with db.session(readonly=True) as s:
        return sorted(s.scalars(select(User.username)))


def _token_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return len(list(s.scalars(select(ApiToken.id))))


def _audit_actions(db: Database) -> list[str]:
    with db.session(readonly=True) as s:
        return list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


# ---------------------------------------------------------------- authentication


def test_me_reports_caller_and_role(
    api: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    me = api.get("/me").json()
    assert (me["username"], me["role"], me["via"], me["scope"]) == ("admin", "admin", "token", None)
    assert isinstance(me["user_id"], int)
    viewer = client_for(make_token("viewer", "vera"))
    me = viewer.get("/me").json()
    assert (me["username"], me["role"]) == ("vera", "viewer")


def test_missing_token_is_401(anon: httpx.Client) -> None:
    body = _error(anon.get("/me"), 401, "UNAUTHENTICATED")
    assert "Bearer" in body["message"]


@pytest.mark.parametrize(
    "header", ["Bearer pst_not-a-real-token", "Bearer nope", "Basic abc", "Bearer"]
)
def test_wrong_or_malformed_token_is_401(
    live_server: LiveServer, db: Database, header: str
) -> None:
    r = httpx.get(live_server.url + "/api/v1/me", headers={"Authorization": header})
    _error(r, 401, "UNAUTHENTICATED")


def test_expired_token_is_401(db: Database, client_for: ClientFor) -> None:
    with db.session() as s:
        auth_service.create_user(s, "test", "erin", role="editor")
        issued = auth_service.create_token(
            s, "test", "erin", "short", expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
        token_id = issued.token.id
    c = client_for(issued.value)
    assert c.get("/me").status_code == 200
    with db.session() as s:
        s.get(ApiToken, token_id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    # The row edit stands in for an hour passing; the server remembered the old expiry for
    # a moment (auth/token_cache.py), which real time passing also checks.
    token_cache.clear_all()
    body = _error(c.get("/me"), 401, "UNAUTHENTICATED")
    assert "expired" in body["message"]


def test_revoked_token_is_401(
    api: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    c = client_for(make_token("editor", "rob"))
    [tok] = c.get("/tokens").json()["items"]
    r = c.delete(f"/tokens/{tok['id']}")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    body = _error(c.get("/me"), 401, "UNAUTHENTICATED")
    assert "revoked" in body["message"]


def test_disabled_users_token_is_401(
    api: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    c = client_for(make_token("editor", "dana"))
    assert api.patch("/users/dana", json={"disabled": True}).json()["disabled"] is True
    _error(c.get("/me"), 401, "UNAUTHENTICATED")
    api.patch("/users/dana", json={"disabled": False})
    assert c.get("/me").status_code == 200


# ---------------------------------------------------------------- users


def test_admin_creates_and_reads_user(api: httpx.Client, db: Database) -> None:
    r = api.post(
        "/users",
        json={
            "username": "alice",
            "role": "Editor",
            "password": "s3cret-pass",
            "email": "alice@example.com",
            "display_name": "Alice A.",
        },
    )
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["username"] == "alice" and user["role"] == "editor"
    assert user["has_password"] is True and user["disabled"] is False
    assert "password" not in user and "password_hash" not in user
    assert api.get("/users/alice").json() == user
    assert "user.create" in _audit_actions(db)
    with db.session(readonly=True) as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "alice"))
    assert stored and stored.startswith("$argon2") and "s3cret-pass" not in stored


def test_production_password_hashing_is_argon2id_at_full_cost() -> None:
    """The suite signs in with a cheap hasher (tests/conftest.py); what a server uses is
    argon2id at argon2-cffi's RFC 9106 low-memory profile: 3 passes over 64 MiB, 4 lanes."""
    stored = PRODUCTION_PASSWORD_HASHER.hash("s3cret-pass")
    params = argon2.extract_parameters(stored)
    assert params.type is argon2.Type.ID
    assert params.time_cost >= 3 and params.memory_cost >= 64 * 1024 and params.parallelism >= 4
    assert PRODUCTION_PASSWORD_HASHER.verify(stored, "s3cret-pass")


@pytest.mark.parametrize("username", ["", "bad name", "-leading", "x" * 65, "a/b", "émile"])
def test_invalid_username_is_422(api: httpx.Client, db: Database, username: str) -> None:
    body = _error(api.post("/users", json={"username": username}), 422, "VALIDATION_ERROR")
    assert "letters, digits" in body["message"]
    assert _usernames(db) == ["admin"]


def test_duplicate_user_is_409(api: httpx.Client, db: Database) -> None:
    assert api.post("/users", json={"username": "bob"}).status_code == 201
    before = _audit_actions(db)
    body = _error(api.post("/users", json={"username": "bob", "role": "admin"}), 409, "CONFLICT")
    assert "already exists" in body["message"]
    assert api.get("/users/bob").json()["role"] == "viewer"
    assert _audit_actions(db) == before


def test_unknown_role_is_422_listing_roles(api: httpx.Client, db: Database) -> None:
    body = _error(
        api.post("/users", json={"username": "carl", "role": "superuser"}), 422, "VALIDATION_ERROR"
    )
    assert "viewer, editor, admin" in body["message"]
    assert body["details"]["valid"] == ["viewer", "editor", "admin"]
    assert _usernames(db) == ["admin"]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"password": "short"}, "at least 8"),
        ({"email": "not-an-email"}, "email"),
        ({"nickname": "x"}, "nickname"),
        ({"role": 5}, "role"),
    ],
)
def test_bad_user_fields_are_422(
    api: httpx.Client, db: Database, payload: dict, needle: str
) -> None:
    body = _error(api.post("/users", json={"username": "dora", **payload}), 422, "VALIDATION_ERROR")
    assert needle in body["message"] or needle in str(body["details"])
    assert _usernames(db) == ["admin"]


def test_non_admins_cannot_manage_users(
    api: httpx.Client, db: Database, make_token: MakeToken, client_for: ClientFor
) -> None:
    for role in ("viewer", "editor"):
        c = client_for(make_token(role))
        body = _error(c.get("/users"), 403, "PERMISSION_DENIED")
        assert "admin role" in body["message"]
        _error(c.get("/users/admin"), 403, "PERMISSION_DENIED")
        _error(
            c.post("/users", json={"username": "mallory", "role": "admin"}),
            403,
            "PERMISSION_DENIED",
        )
        _error(c.patch("/users/admin", json={"role": "viewer"}), 403, "PERMISSION_DENIED")
    assert "mallory" not in _usernames(db)
    assert api.get("/users/admin").json()["role"] == "admin"


def test_list_users_pages(api: httpx.Client) -> None:
    for name in ("u1", "u2", "u3", "u4"):
        api.post("/users", json={"username": name})
    seen, token = [], None
    while True:
        page = api.get("/users", params={"limit": 2, "page_token": token}).json()
        seen += [u["username"] for u in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == ["admin", "u1", "u2", "u3", "u4"]
    _error(api.get("/users", params={"limit": 0}), 400, "BAD_REQUEST")
    _error(api.get("/users", params={"page_token": "!!garbage"}), 400, "BAD_REQUEST")


def test_unknown_user_is_404(api: httpx.Client) -> None:
    body = _error(api.get("/users/ghost"), 404, "NOT_FOUND")
    assert "ghost" in body["message"]
    _error(api.patch("/users/ghost", json={"role": "editor"}), 404, "NOT_FOUND")


def test_patch_user_changes_only_what_is_sent(api: httpx.Client, db: Database) -> None:
    api.post("/users", json={"username": "eve", "email": "eve@example.com"})
    r = api.patch("/users/eve", json={"role": "editor", "display_name": "Eve"})
    assert r.status_code == 200, r.text
    eve = r.json()
    assert (eve["role"], eve["display_name"], eve["email"]) == ("editor", "Eve", "eve@example.com")
    eve = api.patch("/users/eve", json={"email": None, "password": "new-password-1"}).json()
    assert eve["email"] is None and eve["has_password"] is True
    assert api.patch("/users/eve", json={"password": None}).json()["has_password"] is False
    actions = _audit_actions(db)
    for action in ("user.set_role", "user.update", "user.set_password", "user.clear_password"):
        assert action in actions


@pytest.mark.parametrize(
    ("payload", "code", "status"),
    [
        ({"role": "root"}, "VALIDATION_ERROR", 422),
        ({"role": None}, "VALIDATION_ERROR", 422),
        ({"password": "short"}, "VALIDATION_ERROR", 422),
        ({"username": "renamed"}, "VALIDATION_ERROR", 422),
        ({"disabled": "maybe"}, "VALIDATION_ERROR", 422),
    ],
)
def test_bad_patch_changes_nothing(
    api: httpx.Client, db: Database, payload: dict, code: str, status: int
) -> None:
    before = api.post("/users", json={"username": "fay", "role": "editor"}).json()
    actions = _audit_actions(db)
    _error(api.patch("/users/fay", json={"display_name": "changed", **payload}), status, code)
    assert api.get("/users/fay").json() == before
    assert _audit_actions(db) == actions


def test_last_admin_cannot_be_demoted_or_disabled(api: httpx.Client) -> None:
    body = _error(api.patch("/users/admin", json={"role": "editor"}), 409, "CONFLICT")
    assert "last active admin" in body["message"]
    _error(api.patch("/users/admin", json={"disabled": True}), 409, "CONFLICT")
    assert api.get("/me").json()["role"] == "admin"


# ---------------------------------------------------------------- tokens


def test_any_user_creates_own_token_shown_once(
    db: Database, make_token: MakeToken, client_for: ClientFor
) -> None:
    viewer = client_for(make_token("viewer", "gail"))
    r = viewer.post("/tokens", json={"name": "laptop"})
    assert r.status_code == 201, r.text
    created = r.json()
    value = created["token"]
    assert value.startswith("pst_") and created["prefix"] == value[:8]
    assert created["username"] == "gail" and created["status"] == "active"
    assert created["expires_at"] is None
    # The new token works, and is never listed with its value or hash.
    assert client_for(value).get("/me").json()["username"] == "gail"
    listed = viewer.get("/tokens").json()["items"]
    assert {t["name"] for t in listed} == {"test", "laptop"}
    for t in listed:
        assert "token" not in t and "token_hash" not in t and value not in str(t)


def test_tokens_are_stored_hashed(api: httpx.Client, db: Database) -> None:
    value = api.post("/tokens", json={"name": "hashed"}).json()["token"]
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_tokens")).mappings().all()
    assert rows
    for row in rows:
        for column, cell in row.items():
            assert value not in str(cell), f"raw token found in api_tokens.{column}"
            assert ADMIN_TOKEN not in str(cell)
    hashes = {r["token_hash"] for r in rows}
    assert auth_service.hash_token(value) in hashes
    with db.engine.connect() as conn:
        audit_rows = conn.execute(text("SELECT * FROM audit_events")).mappings().all()
    assert value not in str(audit_rows)


def test_last_used_at_is_set(api: httpx.Client, client_for: ClientFor) -> None:
    created = api.post("/tokens", json={"name": "fresh"}).json()
    assert created["last_used_at"] is None
    client_for(created["token"]).get("/me").raise_for_status()
    [listed] = [t for t in api.get("/tokens").json()["items"] if t["id"] == created["id"]]
    used = datetime.fromisoformat(listed["last_used_at"])
    assert abs((datetime.now(UTC) - used).total_seconds()) < 60


def test_expiry_options(api: httpx.Client, db: Database) -> None:
    r = api.post("/tokens", json={"name": "week", "expires_in_days": 7})
    expires = datetime.fromisoformat(r.json()["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) < timedelta(days=7, hours=1)
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    r = api.post("/tokens", json={"name": "at", "expires_at": at.isoformat()})
    assert datetime.fromisoformat(r.json()["expires_at"]) == at
    count = _token_count(db)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = _error(
        api.post("/tokens", json={"name": "old", "expires_at": past}), 422, "VALIDATION_ERROR"
    )
    assert "future" in body["message"]
    body = _error(
        api.post(
            "/tokens", json={"name": "both", "expires_at": at.isoformat(), "expires_in_days": 3}
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert "either" in body["message"]
    _error(
        api.post("/tokens", json={"name": "zero", "expires_in_days": 0}), 422, "VALIDATION_ERROR"
    )
    _error(api.post("/tokens", json={"name": ""}), 422, "VALIDATION_ERROR")
    _error(api.post("/tokens", json={}), 422, "VALIDATION_ERROR")
    assert _token_count(db) == count


def test_non_admin_cannot_create_token_for_someone_else(
    db: Database, make_token: MakeToken, client_for: ClientFor
) -> None:
    c = client_for(make_token("editor", "hank"))
    count = _token_count(db)
    body = _error(
        c.post("/tokens", json={"name": "steal", "username": "admin"}), 403, "PERMISSION_DENIED"
    )
    assert "Only admins" in body["message"]
    assert _token_count(db) == count
    # Naming yourself explicitly is fine.
    assert c.post("/tokens", json={"name": "mine", "username": "hank"}).status_code == 201


def test_admin_creates_token_for_another_user(api: httpx.Client, client_for: ClientFor) -> None:
    api.post("/users", json={"username": "ivy", "role": "editor"})
    created = api.post("/tokens", json={"name": "for-ivy", "username": "ivy"}).json()
    assert created["username"] == "ivy"
    assert client_for(created["token"]).get("/me").json() == {
        "username": "ivy",
        "role": "editor",
        "user_id": api.get("/users/ivy").json()["id"],
        "via": "token",
        "scope": None,
    }
    _error(api.post("/tokens", json={"name": "x", "username": "nobody"}), 404, "NOT_FOUND")


def test_token_listing_visibility(
    api: httpx.Client, make_token: MakeToken, client_for: ClientFor
) -> None:
    jo = client_for(make_token("viewer", "jo"))
    make_token("viewer", "kim")
    assert {t["username"] for t in jo.get("/tokens").json()["items"]} == {"jo"}
    assert jo.get("/tokens", params={"username": "jo"}).status_code == 200
    _error(jo.get("/tokens", params={"all": "true"}), 403, "PERMISSION_DENIED")
    _error(jo.get("/tokens", params={"username": "kim"}), 403, "PERMISSION_DENIED")
    assert {t["username"] for t in api.get("/tokens").json()["items"]} == {"admin"}
    kim = api.get("/tokens", params={"username": "kim"}).json()["items"]
    assert [t["username"] for t in kim] == ["kim"]
    everyone = api.get("/tokens", params={"all": "true", "limit": 1})
    names, page = [], everyone.json()
    while True:
        names += [t["username"] for t in page["items"]]
        if not page["next_page_token"]:
            break
        page = api.get(
            "/tokens", params={"all": "true", "limit": 1, "page_token": page["next_page_token"]}
        ).json()
    assert sorted(names) == ["admin", "jo", "kim"]
    _error(api.get("/tokens", params={"username": "ghost"}), 404, "NOT_FOUND")
    for bad in (encode_token(["x"]), encode_token([2**40]), "%%%"):
        _error(api.get("/tokens", params={"page_token": bad}), 400, "BAD_REQUEST")


def test_revoking_someone_elses_token_as_non_admin_is_403(
    api: httpx.Client, db: Database, make_token: MakeToken, client_for: ClientFor
) -> None:
    lee_token = make_token("editor", "lee")
    mo = client_for(make_token("editor", "mo"))
    [lee_tok] = api.get("/tokens", params={"username": "lee"}).json()["items"]
    body = _error(mo.delete(f"/tokens/{lee_tok['id']}"), 403, "PERMISSION_DENIED")
    assert "your own" in body["message"]
    lee = client_for(lee_token)
    assert lee.get("/me").status_code == 200
    # Admins may revoke anyone's; revoking twice is harmless.
    assert api.delete(f"/tokens/{lee_tok['id']}").json()["revoked_at"] is not None
    assert api.delete(f"/tokens/{lee_tok['id']}").status_code == 200
    _error(lee.get("/me"), 401, "UNAUTHENTICATED")
    assert _audit_actions(db).count("token.revoke") == 1
    _error(api.delete("/tokens/999999"), 404, "NOT_FOUND")
    _error(api.delete("/tokens/170253650831"), 404, "NOT_FOUND")  # beyond a 32-bit id
    _error(api.delete("/tokens/-1"), 404, "NOT_FOUND")
    _error(api.delete("/tokens/abc"), 422, "VALIDATION_ERROR")


def test_viewer_writing_admin_resources_is_403(
    db: Database, make_token: MakeToken, client_for: ClientFor
) -> None:
    viewer = client_for(make_token("viewer"))
    body = _error(viewer.post("/users", json={"username": "x1"}), 403, "PERMISSION_DENIED")
    assert "viewer" in body["message"]
    assert "x1" not in _usernames(db)
