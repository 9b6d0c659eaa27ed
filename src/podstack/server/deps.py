"""FastAPI dependencies shared by every capability's endpoints.

An endpoint declares the role it needs (``Depends(viewer)``, ``editor``, ``admin``) and gets a
``Ctx``: the caller, the settings and a way to open the request's transaction. Transactions
are opened inside the endpoint (``with ctx.write() as s``) rather than in a yield-dependency
so the commit has happened before the response is acknowledged.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from podstack.errors import PermissionDenied, Unauthenticated
from podstack.server.auth import service as auth_service
from podstack.server.auth.principal import LOCAL_ADMIN, Principal
from podstack.server.auth.token_cache import TokenCache
from podstack.server.config import Settings
from podstack.server.db.session import Database

SESSION_COOKIE_USER = "uid"
SESSION_TOKEN_ID = "tok"  # set when the browser signed in by pasting an API token
# The user's ``session_generation`` at sign-in: a session is valid only while it still matches
# (sign-out, password/role change and disabling bump it). One counter per user rather than a
# table of session ids: no extra query (``authenticate`` loads the user anyway), no rows to
# expire; the price is that signing out ends all of that user's browser sessions.
SESSION_GENERATION = "gen"
SESSION_SIGNED_IN = "iat"  # epoch seconds of sign-in: absolute lifetime
SESSION_SEEN = "seen"  # epoch seconds of the last request (refreshed at most once a minute)
SEEN_RESOLUTION_SECONDS = 60
# The UI keeps a per-session CSRF token under this key (see web/core.py). API calls that
# authenticate with the session cookie instead of a bearer token must echo it in this header
# for anything but reads, so a cross-site request can never ride on a signed-in browser.
CSRF_SESSION_KEY = "csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Ctx:
    principal: Principal
    settings: Settings
    db: Database
    state: Any  # app.state: shared services (artifact store, scheduler, notifier, …)

    @property
    def actor(self) -> str:
        return self.principal.username

    @contextmanager
    def write(self) -> Iterator[Session]:
        # The caller rides along: permission checks and the read filter (permissions/) see
        # who the session acts for without a parameter threaded through every service.
        with self.db.session(principal=self.principal) as s:
            yield s

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.db.session(readonly=True, principal=self.principal) as s:
            yield s


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Database:
    return request.app.state.db


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <token>'.")
    return value.strip()


def _token_principal(state: Any, token: str) -> Principal:
    """The caller behind a bearer token: from the short-lived cache of verified tokens
    (auth/token_cache.py), else from the database (then remembered)."""
    cache: TokenCache = state.token_cache
    key = auth_service.hash_token(token)
    principal = cache.get(key)
    if principal is not None:
        return principal
    generation = cache.generation
    db: Database = state.db
    with db.session(readonly=True) as s:
        check = auth_service.resolve_token(s, token)
    if check.stale and check.principal.token_id is not None:
        # A short write of its own, about once a minute per token; the read above took
        # no write lock.
        with db.session() as s:
            auth_service.touch_token(s, check.principal.token_id)
    cache.put(key, check.principal, check.expires_at, generation)
    return check.principal


def start_session(
    request: Request, user_id: int, generation: int, token_id: int | None = None
) -> None:
    """A fresh session (the caller then adds a new CSRF token) for a user who just signed in."""
    now = int(time.time())
    session = request.session
    session.clear()
    session[SESSION_COOKIE_USER] = user_id
    session[SESSION_GENERATION] = generation
    session[SESSION_SIGNED_IN] = now
    session[SESSION_SEEN] = now
    if token_id is not None:
        session[SESSION_TOKEN_ID] = token_id


def check_session(session: dict[str, Any], user: Any, settings: Settings) -> None:
    """Refuses a browser session that was ended (sign-out, password/role change, disabled
    user: the generation moved on), ran past its lifetime or sat idle too long; otherwise
    records the request as activity. Raises ``Unauthenticated`` after clearing the session,
    so the browser also drops the cookie."""
    now = int(time.time())
    seen = session.get(SESSION_SEEN)
    signed_in = session.get(SESSION_SIGNED_IN)
    message = None
    if session.get(SESSION_GENERATION) != user.session_generation:
        message = (
            "This browser session has ended (signed out, or the password, role or account "
            "changed); sign in again."
        )
    elif not isinstance(signed_in, int) or now - signed_in > settings.session_max_age_seconds:
        message = "This browser session has expired; sign in again."
    elif not isinstance(seen, int) or now - seen > settings.session_idle_seconds:
        message = (
            f"This browser session expired after {settings.session_idle_seconds // 60} "
            "minutes without activity; sign in again."
        )
    if message is not None:
        session.clear()
        raise Unauthenticated(message)
    # Writing the session re-issues the cookie: do it only when ``seen`` is noticeably old
    # (a quarter of the idle time at most, so short test settings still slide).
    if now - seen >= min(SEEN_RESOLUTION_SECONDS, settings.session_idle_seconds // 4):
        session[SESSION_SEEN] = now


def authenticate(request: Request) -> Principal:
    """Resolves the caller from a bearer token, else the UI's signed session cookie.
    May read the database: call it from a worker thread (see ``authenticate_api``)."""
    state = request.app.state
    settings: Settings = state.settings
    if settings.no_auth or settings.embedded:
        return LOCAL_ADMIN
    token = _bearer(request)
    db: Database = state.db
    if token is not None:
        principal = _token_principal(state, token)
        # Here, not per endpoint, so no route (API or UI) can forget it.
        principal.require_path_in_scope(request.url.path)
        return principal
    session = request.scope.get("session")
    if session and session.get(SESSION_COOKIE_USER) is not None:
        from podstack.server.auth.models import User

        with db.session(readonly=True) as s:
            user = s.get(User, session[SESSION_COOKIE_USER])
            token_id = session.get(SESSION_TOKEN_ID)
            if token_id is not None and not auth_service.token_is_active(s, token_id):
                session.clear()
                raise Unauthenticated(
                    "The API token this browser session signed in with was "
                    "revoked or has expired; sign in again."
                )
            if user is not None and not user.disabled:
                check_session(session, user, settings)
                # UI routes check the token themselves (form field or header, web/core.py).
                if request.method not in _SAFE_METHODS and request.url.path.startswith("/api/"):
                    expected = session.get(CSRF_SESSION_KEY)
                    sent = request.headers.get(CSRF_HEADER)
                    if not expected or not sent or not hmac.compare_digest(expected, sent):
                        raise PermissionDenied(
                            "Missing or wrong CSRF token: browser-session API calls that "
                            f"change data must send the {CSRF_HEADER} header.",
                            {"reason": "csrf"},
                        )
                return auth_service.principal_for_user(user)
    raise Unauthenticated(
        "Authentication required: send 'Authorization: Bearer <token>' "
        "(create a token with `podstack tokens create`)."
    )


async def authenticate_api(request: Request) -> Principal:
    """``authenticate`` for API dependencies. A recently verified bearer token is answered on
    the event loop (no database, no thread hop: ~0.3 ms of a typical request); anything that
    needs the database goes to a worker thread."""
    state = request.app.state
    token = None if state.settings.no_auth or state.settings.embedded else _bearer(request)
    if token is not None:
        principal = state.token_cache.get(auth_service.hash_token(token))
        if principal is not None:
            principal.require_path_in_scope(request.url.path)
            return principal
    return await run_in_threadpool(authenticate, request)


async def _ctx(request: Request, role: str) -> Ctx:
    principal = await authenticate_api(request)
    principal.require(role)
    request.state.principal = principal
    state = request.app.state
    return Ctx(principal=principal, settings=state.settings, db=state.db, state=state)


# Async so that FastAPI calls them on the event loop (a sync dependency costs a worker-thread
# hop per request); they only touch the database through ``run_in_threadpool``.
async def viewer(request: Request) -> Ctx:
    return await _ctx(request, "viewer")


async def editor(request: Request) -> Ctx:
    return await _ctx(request, "editor")


async def admin(request: Request) -> Ctx:
    return await _ctx(request, "admin")


ViewerCtx = Annotated[Ctx, Depends(viewer)]
EditorCtx = Annotated[Ctx, Depends(editor)]
AdminCtx = Annotated[Ctx, Depends(admin)]
