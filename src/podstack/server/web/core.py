"""Web UI plumbing shared by every page module: templates, the page context (who is looking,
what they may do), CSRF, flash toasts, and turning domain errors into HTML.

Pages call capability *services* through ``ctx.read()`` / ``ctx.write()`` exactly like the REST
endpoints do; nothing here knows a business rule.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import podstack
from podstack.errors import BadRequest, PermissionDenied, PodstackError, Unauthenticated
from podstack.server.auth.principal import Principal
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.deps import CSRF_HEADER, CSRF_SESSION_KEY, authenticate
from podstack.server.registry.rules import STAGES

HERE = Path(__file__).parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
CSRF_FORM_FIELD = "csrf_token"
FLASH_SESSION_KEY = "flash"
TOAST_EVENT = "podstack:toast"


# ---------------------------------------------------------------- formatting filters


def fmt_number(value: Any) -> str:
    """Metrics: six significant digits, NaN and infinities spelled out."""
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.6g}"


def fmt_delta(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if value == 0:
        return "±0"
    return ("+" if value > 0 else "−") + fmt_number(abs(value))


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def fmt_datetime(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "—"
    now = now or datetime.now(UTC)
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return "in the future"
    for limit, div, unit in (
        (60, 1, "second"),
        (3600, 60, "minute"),
        (86400, 3600, "hour"),
        (86400 * 30, 86400, "day"),
        (86400 * 365, 86400 * 30, "month"),
    ):
        if seconds < limit:
            n = seconds // div
            if unit == "second" and n < 10:
                return "just now"
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    years = seconds // (86400 * 365)
    return f"{years} year{'s' if years != 1 else ''} ago"


def time_tag(value: datetime | None) -> Markup:
    """``<time>`` with a relative label and the exact UTC time as its tooltip."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        value.isoformat(), fmt_datetime(value), fmt_ago(value)
    )


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "—"
    seconds = int(((end or datetime.now(UTC)) - start).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def _tojson_data(value: Any) -> Markup:
    """JSON for ``<script type="application/json">`` blocks: NaN/inf become null (JSON has
    neither) and ``<``, ``>``, ``&`` are escaped so the data can never close the tag."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, datetime):
            return v.isoformat()
        return v

    text = json.dumps(clean(value), separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("'", "\\u0027"))


def _url_with(base: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "", [], False)}
    return f"{base}?{urlencode(clean, doseq=True)}" if clean else base


env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(
    num=fmt_number,
    delta=fmt_delta,
    filesize=fmt_bytes,
    datetime=fmt_datetime,
    ago=fmt_ago,
    time=time_tag,
    json_data=_tojson_data,
    urlpart=lambda v: quote(str(v), safe=""),
    urlpath=lambda v: quote(str(v), safe="/"),
)
env.globals.update(
    version=podstack.__version__,
    url_with=_url_with,
    duration=fmt_duration,
    STAGES=STAGES,
)


def static_url(path: str) -> str:
    # The version in the query busts browser caches on upgrade without a build step.
    return f"/static/{path}?v={podstack.__version__}"


env.globals["static"] = static_url


# ---------------------------------------------------------------- session helpers


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


def flash(request: Request, message: str, level: str = "success") -> None:
    items = list(request.session.get(FLASH_SESSION_KEY, []))
    items.append({"level": level, "message": message})
    request.session[FLASH_SESSION_KEY] = items[-5:]


def pop_flashes(request: Request) -> list[dict[str, str]]:
    return list(request.session.pop(FLASH_SESSION_KEY, None) or [])


def is_htmx(request: Request) -> bool:
    """An htmx call wanting a fragment. History restores (the back button after htmx pushed
    a URL) also carry HX-Request but need the whole page."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") != "true"
    )


def safe_next(target: str | None, default: str = "/") -> str:
    """Only same-site relative paths: ``/models?x`` yes; ``//evil``, ``https://…``, ``/\\x`` no."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(c in target for c in "\r\n\t\\") or ":" in target.split("?", 1)[0]:
        return default
    return target


def login_url(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    if request.method != "GET" or path == "/":
        return "/login"
    return "/login?" + urlencode({"next": path})


# ---------------------------------------------------------------- errors


class LoginRequired(Unauthenticated):
    pass


class CsrfFailed(PermissionDenied):
    pass


def toast_header(message: str, level: str = "success") -> dict[str, str]:
    # ensure_ascii keeps the header latin-1 safe whatever the message contains.
    return {"HX-Trigger": json.dumps({TOAST_EVENT: {"level": level, "message": message}})}


def render_template(name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)


def base_context(request: Request, principal: Principal | None) -> dict[str, Any]:
    return {
        "request": request,
        "user": principal,
        "can_edit": bool(principal and principal.has_role("editor")),
        "is_admin": bool(principal and principal.has_role("admin")),
        "csrf_token": csrf_token(request),
        "path": request.url.path,
    }


def error_page(
    request: Request, exc: PodstackError, principal: Principal | None = None
) -> Response:
    """A domain error as the UI shows it: a toast for htmx calls, a full page otherwise."""
    if isinstance(exc, Unauthenticated):
        target = login_url(request)
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    status = exc.status if 400 <= exc.status < 600 else 500
    if is_htmx(request):
        headers = toast_header(exc.message, "error")
        headers["HX-Reswap"] = "none"
        return Response(status_code=status, headers=headers)
    if principal is None:
        principal = getattr(request.state, "principal", None)
    ctx = base_context(request, principal)
    ctx.update(flashes=pop_flashes(request), error=exc, status=status)
    return HTMLResponse(render_template("error.html", **ctx), status_code=status)


async def signed_in_principal(request: Request) -> Principal | None:
    """Who is signed in, or None, never raising: for pages any visitor may see (the 404 page
    of an unknown URL), which must still show a signed-in user their menu, not "Sign in"."""
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return principal
    try:
        return await run_in_threadpool(authenticate, request)
    except PodstackError:
        return None


class WebRoute(APIRoute):
    """Routes of the UI answer in HTML: domain errors become pages (or htmx toasts) instead of
    the API's JSON, and a missing session becomes a redirect to the login page."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except PodstackError as exc:
                return error_page(request, exc)
            except RequestValidationError as exc:
                fields = ", ".join(
                    ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
                    for e in exc.errors()
                )
                return error_page(request, BadRequest(f"Invalid request: check {fields}."))

        return handler


# ---------------------------------------------------------------- page context


@dataclass
class WebCtx:
    request: Request
    principal: Principal
    settings: Settings
    db: Database
    state: Any
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return self.principal.username

    @property
    def can_edit(self) -> bool:
        return self.principal.has_role("editor")

    @property
    def is_admin(self) -> bool:
        return self.principal.has_role("admin")

    @property
    def htmx(self) -> bool:
        return is_htmx(self.request)

    @contextmanager
    def read(self) -> Iterator[Session]:
        # As deps.Ctx: the caller rides along for the permission checks and read filter.
        with self.db.session(readonly=True, principal=self.principal) as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self.db.session(principal=self.principal) as s:
            yield s

    def context(self, **extra: Any) -> dict[str, Any]:
        ctx = base_context(self.request, self.principal)
        ctx.update(extra)
        return ctx

    def render(
        self,
        template: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> HTMLResponse:
        """Full pages pop pending flash toasts; fragments (htmx swaps) leave them queued."""
        ctx = self.context(**extra)
        if not template.rsplit("/", 1)[-1].startswith("_"):
            ctx["flashes"] = pop_flashes(self.request)
        return HTMLResponse(
            render_template(template, **ctx),
            status_code=status_code,
            # The same URL answers a page or a fragment: caches must keep them apart.
            headers={"Vary": "HX-Request", **self.extra_headers, **(headers or {})},
        )

    def flash(self, message: str, level: str = "success") -> None:
        flash(self.request, message, level)

    def redirect(self, url: str, message: str | None = None, level: str = "success") -> Response:
        """After a successful form: full navigation (htmx follows ``HX-Redirect``)."""
        if message:
            self.flash(message, level)
        if self.htmx:
            return Response(status_code=200, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)


def _make_ctx(request: Request, role: str) -> WebCtx:
    try:
        principal = authenticate(request)
    except Unauthenticated as exc:
        raise LoginRequired(exc.message) from exc
    request.state.principal = principal
    principal.require(role)
    state = request.app.state
    return WebCtx(
        request=request, principal=principal, settings=state.settings, db=state.db, state=state
    )


async def csrf_protect(request: Request) -> None:
    """Every state-changing UI request carries the session's CSRF token, in the
    ``X-CSRF-Token`` header (htmx, set by static/js/app.js) or the ``csrf_token`` form field."""
    expected = request.session.get(CSRF_SESSION_KEY)
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FORM_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed(
            "This form could not be verified (its security token is missing or out of date). "
            "Reload the page and try again.",
            {"reason": "csrf"},
        )


def _page_dep(role: str) -> Callable[[Request], WebCtx]:
    def dep(request: Request) -> WebCtx:
        return _make_ctx(request, role)

    return dep


def _action_dep(role: str) -> Callable[..., Awaitable[WebCtx]]:
    async def dep(request: Request, _csrf: None = Depends(csrf_protect)) -> WebCtx:
        # authenticate() does a database read; keep it off the event loop.
        return await run_in_threadpool(_make_ctx, request, role)

    return dep


ViewerPage = Annotated[WebCtx, Depends(_page_dep("viewer"))]
AdminPage = Annotated[WebCtx, Depends(_page_dep("admin"))]
ViewerAction = Annotated[WebCtx, Depends(_action_dep("viewer"))]
EditorAction = Annotated[WebCtx, Depends(_action_dep("editor"))]
AdminAction = Annotated[WebCtx, Depends(_action_dep("admin"))]


def form_errors(
    exc: PodstackError,
    default_field: str = "_form",
    *,
    by_detail: Iterable[tuple[str, str]] = (),
    rename: Mapping[str, str] | None = None,
    fields: Collection[str] | None = None,
) -> dict[str, str]:
    """Maps a service error onto the form field it is about, so the message appears under
    that input; anything else is shown at ``default_field`` (the top of the form).

    The field is the one the error names (``details.field``), else the first of ``by_detail``
    (detail key, form field) whose key the details carry; ``rename`` maps a service field name
    onto the form's input name; with ``fields``, a field the form does not have falls back to
    ``default_field``. The one place the UI does this, for every page module."""
    details = exc.details if isinstance(exc.details, dict) else {}
    name = details.get("field") or next((f for key, f in by_detail if key in details), None)
    if name and rename:
        name = rename.get(str(name), name)
    if name and fields is not None and str(name) not in fields:
        name = None
    return {str(name) if name else default_field: exc.message}
