"""Single sign-on refusals: each answers a clear error page and creates no session.

Two providers are used:
- the real one (oidc-provider, ``harness.sso``) for what it can show: a wrong ``state``, an
  answer naming another issuer (RFC 9207 ``iss``), the provider's own error, a callback
  nobody started;
- ``fake_idp.FakeIdp`` for ID tokens a certified provider never issues (expired, wrong
  audience, wrong nonce, unsigned, another issuer, a foreign signature). Its tokens are built
  with joserfc and a key the test controls; the checks under test are Podstack's, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import LiveServer
from tests.oidc import harness
from tests.oidc.fake_idp import FakeIdp
from tests.oidc.harness import CLIENT_ID, Sso, sso_settings

from podstack.server.auth.models import User, UserIdentity
from podstack.server.config import Settings
from podstack.server.db.session import Database

pytestmark = pytest.mark.one_db
sso = harness.sso  # the real provider and a server trusting it (fixture)


def _start(server_url: str) -> tuple[httpx.Client, dict[str, str]]:
    """A browser-like client that pressed "Sign in with ...": the authorization request's
    parameters, as the provider would receive them."""
    c = httpx.Client(base_url=server_url, follow_redirects=False, timeout=30)
    r = c.get("/login/oidc", params={"next": "/models"})
    assert r.status_code == 303, r.text
    params = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
    return c, params


def _assert_refused(r: httpx.Response, c: httpx.Client, status: int, *phrases: str) -> None:
    assert r.status_code == status, r.text
    assert "text/html" in r.headers["content-type"]
    assert "Sign in" in r.text  # the login page, with the reason
    for phrase in phrases:
        assert phrase in r.text, (phrase, r.text[-3000:])
    # No session: the API does not know this browser.
    assert c.get("/api/v1/me").status_code == 401


def _sso_users(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(UserIdentity)) or 0


# ---------------------------------------------------------------- against the real provider


def test_authorization_request_uses_pkce_s256_state_and_nonce(sso: Sso, db: Database) -> None:
    _c, params = _start(sso.server.url)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    assert params["redirect_uri"] == sso.server.url + "/login/oidc/callback"
    assert params["scope"] == "openid profile email groups"
    # The real provider accepts the request (it requires PKCE): it shows its login form.
    r = httpx.get(sso.provider.issuer + "/auth", params=params, follow_redirects=True)
    assert r.status_code == 200 and 'name="login"' in r.text


def test_wrong_state_is_refused(sso: Sso, db: Database) -> None:
    c, params = _start(sso.server.url)
    r = c.get("/login/oidc/callback", params={"code": "x", "state": params["state"] + "x"})
    _assert_refused(r, c, 400, "wrong state")
    # The attempt is used up: even the right state no longer works.
    r = c.get("/login/oidc/callback", params={"code": "x", "state": params["state"]})
    _assert_refused(r, c, 400, "not started from this browser")
    assert _sso_users(db) == 0


def test_answer_from_another_issuer_is_refused(sso: Sso, db: Database) -> None:
    c, params = _start(sso.server.url)
    r = c.get(
        "/login/oidc/callback",
        params={"code": "x", "state": params["state"], "iss": "https://evil.example"},
    )
    _assert_refused(r, c, 401, "https://evil.example", "refused")


def test_provider_error_is_shown(sso: Sso, db: Database) -> None:
    c, params = _start(sso.server.url)
    r = c.get(
        "/login/oidc/callback",
        params={
            "state": params["state"],
            "error": "access_denied",
            "error_description": "<b>user cancelled</b>",
        },
    )
    _assert_refused(r, c, 401, "access_denied", "&lt;b&gt;user cancelled&lt;/b&gt;")


def test_forged_code_is_refused_by_the_provider(sso: Sso, db: Database) -> None:
    c, params = _start(sso.server.url)
    r = c.get("/login/oidc/callback", params={"code": "forged", "state": params["state"]})
    _assert_refused(r, c, 401, "refused to complete the sign-in", "invalid_grant")


def test_callback_without_a_started_sign_in(sso: Sso, db: Database) -> None:
    c = httpx.Client(base_url=sso.server.url, timeout=30)
    r = c.get("/login/oidc/callback", params={"code": "x", "state": "y"})
    _assert_refused(r, c, 400, "not started from this browser")


def test_sso_routes_answer_404_when_not_configured(live_server: LiveServer, db: Database) -> None:
    c = httpx.Client(base_url=live_server.url, timeout=30)
    r = c.get("/login/oidc")
    assert r.status_code == 404 and "not configured" in r.text
    assert "Sign in with" not in c.get("/login").text


# ---------------------------------------------------------------- tokens only a fake can make


@pytest.fixture(scope="module")
def fake(settings: Settings, db: Database) -> Iterator[tuple[FakeIdp, LiveServer]]:
    idp = FakeIdp(CLIENT_ID)
    idp.start()
    server = LiveServer(sso_settings(settings, idp.issuer))
    server.start()
    yield idp, server
    server.stop()
    idp.stop()


def _callback_with(
    fake: tuple[FakeIdp, LiveServer], build: Any
) -> tuple[httpx.Response, httpx.Client]:
    idp, server = fake
    c, params = _start(server.url)
    idp.next_id_token = build(idp, params["nonce"])
    r = c.get("/login/oidc/callback", params={"code": "code-1", "state": params["state"]})
    return r, c


def test_fake_provider_control_a_good_token_signs_in(fake: Any, db: Database) -> None:
    """The control for the cases below: the same path with a good token works."""
    r, c = _callback_with(fake, lambda idp, nonce: idp.sign(idp.claims(nonce)))
    assert r.status_code == 303 and r.headers["location"] == "/models"
    me = c.get("/api/v1/me").json()
    assert me["username"] == "bob" and me["role"] == "editor" and me["via"] == "session"
    # The token request carried the PKCE verifier matching the challenge, and the code.
    sent = fake[0].token_requests[-1]
    assert sent["grant_type"] == "authorization_code" and sent["code"] == "code-1"
    assert len(sent["code_verifier"]) >= 43


BAD_TOKENS = [
    (
        "expired",
        lambda idp, n: idp.sign(idp.claims(n, iat=1_600_000_000, exp=1_600_000_300)),
        "it has expired",
    ),
    (
        "wrong audience",
        lambda idp, n: idp.sign(idp.claims(n, aud="another-client")),
        "aud",
    ),
    (
        "wrong audience with a matching azp",
        lambda idp, n: idp.sign(idp.claims(n, aud="another-client", azp=CLIENT_ID)),
        "aud",
    ),
    ("wrong nonce", lambda idp, n: idp.sign(idp.claims("a-different-nonce")), "nonce"),
    ("no nonce", lambda idp, n: idp.sign(idp.claims(n, nonce=None)), "nonce"),
    ("unsigned (alg none)", lambda idp, n: idp.unsigned(idp.claims(n)), "unsigned"),
    (
        "unknown issuer",
        lambda idp, n: idp.sign(idp.claims(n, iss="https://other-idp.example")),
        "iss",
    ),
    (
        "signed by another key",
        lambda idp, n: idp.sign(idp.claims(n), key=idp.other_key),
        "signature does not verify",
    ),
    ("not a JWT", lambda idp, n: "not-a-jwt", "refused"),
]


@pytest.mark.parametrize(("case", "build", "phrase"), BAD_TOKENS, ids=[b[0] for b in BAD_TOKENS])
def test_bad_id_tokens_are_refused(
    fake: Any, db: Database, case: str, build: Any, phrase: str
) -> None:
    r, c = _callback_with(fake, build)
    _assert_refused(r, c, 401, "ID token", phrase)
    with db.session(readonly=True) as s:
        assert s.scalar(select(User).where(User.username == "bob")) is None


def test_token_endpoint_elsewhere_on_a_private_address_is_refused_by_egress(
    fake: Any, db: Database
) -> None:
    """Only the issuer's own host is allowed implicitly: a token endpoint that discovery puts
    on another loopback/private address is refused (503) unless PODSTACK_OUTBOUND_ALLOW
    lists it."""
    idp, server = fake
    idp.discovery_overrides = {"token_endpoint": f"http://127.0.0.2:{idp.port}/token"}
    server.app.state.oidc_client = None  # forget the cached discovery document
    try:
        r, c = _callback_with(fake, lambda idp, n: idp.sign(idp.claims(n)))
    finally:
        idp.discovery_overrides = {}
        server.app.state.oidc_client = None
    _assert_refused(r, c, 503, "PODSTACK_OUTBOUND_ALLOW", "loopback")


def test_username_clash_with_a_local_user_is_refused(fake: Any, db: Database) -> None:
    """A provider account whose preferred_username names an existing local user (e.g.
    admin) does not take that user over."""
    r, c = _callback_with(
        fake, lambda idp, n: idp.sign(idp.claims(n, preferred_username="admin", sub="sub-x"))
    )
    _assert_refused(r, c, 401, "already exists and is not linked")
    assert _sso_users(db) == 0


def test_userinfo_about_another_subject_is_refused(fake: Any, db: Database) -> None:
    """Claims missing from the ID token come from userinfo, which must be about the same
    subject."""
    idp, _server = fake
    idp.userinfo = {"sub": "someone-else", "preferred_username": "mallory", "groups": ["ml"]}
    try:
        r, c = _callback_with(
            fake,
            lambda idp, n: idp.sign(idp.claims(n, preferred_username=None, groups=None)),
        )
    finally:
        idp.userinfo = {}
    _assert_refused(r, c, 401, "userinfo answer is about another subject")
    assert _sso_users(db) == 0


def test_claims_from_userinfo_complete_the_id_token(fake: Any, db: Database) -> None:
    idp, _server = fake
    idp.userinfo = {"sub": "sub-bob", "preferred_username": "bob", "groups": ["ml-admins"]}
    try:
        r, c = _callback_with(
            fake,
            lambda idp, n: idp.sign(idp.claims(n, preferred_username=None, groups=None)),
        )
    finally:
        idp.userinfo = {}
    assert r.status_code == 303, r.text
    assert c.get("/api/v1/me").json()["role"] == "admin"


def test_client_secret_never_reaches_the_logs(
    fake: Any, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _callback_with(fake, lambda idp, n: idp.sign(idp.claims(n)))  # a good sign-in
    _callback_with(fake, lambda idp, n: idp.sign(idp.claims(n, aud="x")))  # and a refusal
    secret = harness.CLIENT_SECRET
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert secret not in repr(fake[1].settings)
