"""Sign in / sign out (password, API token, or single sign-on) and the API tokens page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from podstack.errors import NotFound, PodstackError, Unauthenticated
from podstack.schemas.auth import TokenOut
from podstack.server.auth import oidc, service_accounts
from podstack.server.auth import service as auth_service
from podstack.server.auth.models import User
from podstack.server.deps import (
    SESSION_COOKIE_USER,
    authenticate,
    check_session,
    start_session,
)
from podstack.server.web.core import (
    ViewerAction,
    ViewerPage,
    WebCtx,
    WebRoute,
    base_context,
    csrf_protect,
    csrf_token,
    flash,
    form_errors,
    pop_flashes,
    render_template,
    safe_next,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _login_page(
    request: Request, *, next_url: str, username: str = "", error: str | None = None, status: int
) -> HTMLResponse:
    ctx = base_context(request, None)
    config = oidc.config_of(request.app.state.settings)
    ctx.update(
        next=next_url,
        username=username,
        errors={"_form": error} if error else {},
        flashes=pop_flashes(request),
        sso_name=config.provider_name if config else None,
    )
    return HTMLResponse(render_template("auth/login.html", **ctx), status_code=status)


@router.get("/login")
def login_form(request: Request, next: str = "") -> Response:
    target = safe_next(next)
    try:
        authenticate(request)
    except Unauthenticated:
        return _login_page(request, next_url=target, status=200)
    return RedirectResponse(target, status_code=303)


def _sign_in(request: Request, username: str, secret: str) -> tuple[int, int, int | None]:
    """The user id and session generation for a username + password, or for an API token
    pasted as the password (the first-start admin has only a token). Failed password attempts
    count towards the lockout, so the session is committed even when sign-in is refused."""
    state = request.app.state
    settings = state.settings
    failure: Unauthenticated | None = None
    user_id: int | None = None
    token_id: int | None = None
    generation = 0
    with state.db.session() as s:
        principal = None
        if secret:
            try:
                principal = auth_service.authenticate_token(s, secret)
            except Unauthenticated as exc:
                # An unknown token is most likely a password; a known-but-dead one is news.
                if exc.message != "Invalid API token.":
                    failure = exc
        if principal is not None:
            refusal = service_accounts.browser_refusal(s, principal.user_id)
            if refusal is not None:
                failure = refusal
            elif principal.scope:
                failure = Unauthenticated(
                    "This token is limited to a single run and cannot sign in to the web UI."
                )
            elif username and username != principal.username:
                failure = Unauthenticated("Wrong username or password.")
            else:
                user_id = principal.user_id
                token_id = principal.token_id
        elif failure is None:
            if not username and secret:
                # No username means the secret was meant as an API token: say that it is
                # not one we know, rather than asking for a username.
                failure = Unauthenticated(
                    "That API token is not valid: it may be mistyped, revoked or expired. "
                    "To sign in with a password, enter your username too."
                )
            elif not username:
                failure = Unauthenticated(
                    "Enter your username and password, or paste an API token."
                )
            else:
                try:
                    user = auth_service.authenticate_password(
                        s,
                        username,
                        secret,
                        max_failures=settings.login_max_failures,
                        lockout_seconds=settings.login_lockout_seconds,
                    )
                    user_id = user.id
                except Unauthenticated as exc:
                    failure = exc
        if user_id is not None:
            generation = s.get(User, user_id).session_generation  # type: ignore[union-attr]
    if failure is not None or user_id is None:
        raise failure or Unauthenticated("Wrong username or password.")
    return user_id, generation, token_id


@router.post("/login")
def login_submit(
    request: Request,
    _csrf: Annotated[None, Depends(csrf_protect)],
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    target = safe_next(next)
    username = username.strip()
    try:
        user_id, generation, token_id = _sign_in(request, username, password)
    except Unauthenticated as exc:
        return _login_page(
            request, next_url=target, username=username, error=exc.message, status=401
        )
    # A fresh session (and CSRF token) on every sign-in.
    start_session(request, user_id, generation, token_id)
    csrf_token(request)
    return RedirectResponse(target, status_code=303)


# ---------------------------------------------------------------- single sign-on (OIDC)

_PENDING_KEY = "oidc_pending"


def _callback_url(request: Request) -> str:
    public = request.app.state.settings.public_url
    base = public.rstrip("/") if public else str(request.base_url).rstrip("/")
    return base + oidc.CALLBACK_PATH


def _sso_client(request: Request) -> oidc.OidcClient:
    client = oidc.client_for(request.app.state)
    if client is None:
        raise NotFound(
            "Single sign-on is not configured on this server; sign in with a username and "
            "password or an API token (admins: see PODSTACK_OIDC_ISSUER in the README).",
            {"reason": "oidc_off"},
        )
    return client


@router.get("/login/oidc")
def sso_start(request: Request, next: str = "") -> Response:
    """Sends the browser to the identity provider; what comes back is checked against what
    is remembered here, in this browser's signed session (state, nonce, PKCE verifier)."""
    target = safe_next(next)
    try:
        url, pending = _sso_client(request).begin(_callback_url(request), target)
    except PodstackError as exc:
        return _login_page(request, next_url=target, error=exc.message, status=exc.status)
    request.session[_PENDING_KEY] = pending.to_dict()
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


@router.get(oidc.CALLBACK_PATH)
def sso_callback(request: Request) -> Response:
    # One use: whatever happens next, this sign-in attempt is over.
    pending = oidc.Pending.from_dict(request.session.pop(_PENDING_KEY, None))
    target = pending.next_url if pending else "/"
    try:
        client = _sso_client(request)
        claims = client.finish(pending, dict(request.query_params))
        with request.app.state.db.session() as s:
            user = oidc.sign_in(s, client.config, claims)
            user_id, generation = user.id, user.session_generation
            s.flush()
            s.refresh(user)
            generation = user.session_generation
    except PodstackError as exc:
        # No session is created; the login page says what went wrong.
        return _login_page(request, next_url=target, error=exc.message, status=exc.status)
    start_session(request, user_id, generation)
    csrf_token(request)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request, _csrf: Annotated[None, Depends(csrf_protect)]) -> Response:
    # Clearing the cookie is not enough: a copy of it (saved, stolen) would still be signed.
    # Bumping the user's session generation ends every session signed in before, this one
    # included. Only a session that is still valid may do so, so an old cookie cannot sign
    # its user out of newer sessions.
    user_id = request.session.get(SESSION_COOKIE_USER)
    if user_id is not None:
        with request.app.state.db.session() as s:
            user = s.get(User, user_id)
            if user is not None and not user.disabled:
                try:
                    check_session(request.session, user, request.app.state.settings)
                except Unauthenticated:
                    pass
                else:
                    auth_service.sign_out(s, user)
    request.session.clear()
    flash(request, "You have signed out.")
    return RedirectResponse("/login", status_code=303)


# ---------------------------------------------------------------- API tokens


def _tokens(ctx: WebCtx, show_all: bool) -> list[TokenOut]:
    # With authentication off there is no user account: show everyone's tokens.
    all_users = (show_all and ctx.is_admin) or ctx.principal.user_id is None
    with ctx.read() as s:
        rows = auth_service.visible_tokens(s, ctx.principal, all_users=all_users)
        return [TokenOut.model_validate(t) for t in reversed(rows)]


def _tokens_page(
    ctx: WebCtx,
    *,
    show_all: bool,
    created: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    template = "auth/_tokens_panel.html" if ctx.htmx else "auth/tokens.html"
    return ctx.render(
        template,
        status_code=status,
        # The token value is shown once: never let a cache keep the page that holds it.
        headers={"Cache-Control": "no-store"},
        section="tokens",
        partial=ctx.htmx,
        tokens=_tokens(ctx, show_all),
        show_all=show_all and ctx.is_admin,
        created=created,
        errors=errors or {},
        form=form or {"name": "", "expires_in_days": "90"},
    )


@router.get("/settings/tokens")
def tokens_page(ctx: ViewerPage, all: bool = False) -> Response:
    return _tokens_page(ctx, show_all=all)


EXPIRY_CHOICES = ("30", "90", "365", "never")


@router.post("/settings/tokens")
def create_token(
    ctx: ViewerAction,
    name: Annotated[str, Form()] = "",
    expires_in_days: Annotated[str, Form()] = "90",
    all: Annotated[bool, Form()] = False,
) -> Response:
    form = {"name": name, "expires_in_days": expires_in_days}
    name = name.strip()
    if expires_in_days not in EXPIRY_CHOICES:
        return _tokens_page(
            ctx,
            show_all=all,
            errors={"expires_in_days": "Choose 30, 90 or 365 days, or never."},
            form=form,
            status=422,
        )
    if not name:
        return _tokens_page(
            ctx,
            show_all=all,
            errors={"name": "Give the token a name, e.g. the machine or job that will use it."},
            form=form,
            status=422,
        )
    days = None if expires_in_days == "never" else int(expires_in_days)
    try:
        with ctx.write() as s:
            issued = auth_service.issue_token(
                s,
                ctx.principal,
                name,
                username=None if ctx.principal.user_id is not None else "admin",
                expires_in_days=days,
            )
            created = {"name": issued.token.name, "value": issued.value}
    except PodstackError as exc:
        return _tokens_page(
            ctx, show_all=all, errors=form_errors(exc, "name"), form=form, status=exc.status
        )
    return _tokens_page(ctx, show_all=all, created=created)


@router.post("/settings/tokens/{token_id}/revoke")
def revoke_token(ctx: ViewerAction, token_id: int) -> Response:
    with ctx.write() as s:
        tok = auth_service.revoke_token(s, ctx.principal, token_id)
        name = tok.name
    return ctx.redirect("/settings/tokens", f"Token “{name}” revoked.")
