"""The permission matrix over every route: each route of the app (REST, UI) that names a model,
a version, an experiment, a run, an approval request or a schedule, against every kind of
principal: the owner, grantees of READ, EDIT and MANAGE, a group grantee (EDIT), an editor
without grants, an admin, a service account (READ grant) and a job token, on a server whose
default permission is NONE. (The MLflow-compatible API: test_mlflow_sweep.py and
test_matrix.py; the UI pages by principal: test_ui_pages.py.)

What each principal may do follows from the level it holds and the level the route needs:
READ for reads, EDIT for changes, MANAGE (in one's own right) for deleting a model or an
experiment and for its grants and protections. Asserted per call:

* below READ: the answer for objects that do not exist (test_every_route.py, repeated here);
* READ or more but below the need: refused, 403, and nothing changes (the audit log does not
  grow) — or the same 422 that a request of that shape gets before any lookup;
* at or above the need: not refused (no 401/403, no 404 but for what an earlier call in the
  sweep deleted, no 5xx). Reads run first, then changes, deletions last.

A job token (scope ``run:<id>``) is refused (403) everywhere but its own run's API routes.
Service accounts and job tokens cannot sign in to the UI (test_ui_pages.py), so they are
swept on the API only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from podstack import MLOpsClient
from podstack.server.audit.models import AuditEvent
from podstack.server.auth import groups, service_accounts
from podstack.server.auth import service as auth_service
from podstack.server.db.session import Database
from podstack.server.permissions import read_filter
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.reliability.test_access_control import TABLE, _is_ui, _routes
from tests.reliability.world import DOOMED, MODEL, PASSWORD, World, build, path_for
from tests.server.permissions.test_every_route import _ghost, _names_a_resource

# The rules here are decided in Python; the read filter's SQL is checked on both databases by
# test_matrix.py, test_every_route.py and test_search_at_scale.py. One pass is enough.
pytestmark = pytest.mark.one_db

TEAM = "mx-team"
LEVEL = {"NONE": 0, "READ": 1, "EDIT": 2, "MANAGE": 3}
# principal -> level held on the world's models and experiments
HELD = {
    "owner": "MANAGE",
    "manager": "MANAGE",
    "admin": "MANAGE",
    "writer": "EDIT",
    "grouped": "EDIT",
    "reader": "READ",
    "service": "READ",
    "other": "NONE",
}
UI_CALLERS = ("owner", "manager", "admin", "writer", "grouped", "reader", "other")
# Routes that need MANAGE (in one's own right): deleting a model or an experiment, archiving
# one, and its grants and protections.
_MANAGE = re.compile(
    r"^(DELETE /api/v1/registered-models/\{name\}"
    r"|DELETE /api/v1/experiments/\{ref\}"
    r"|POST /models/\{name\}/delete"
    r"|POST /experiments/\{ref\}/(archive|restore|delete)"
    r"|\w+ \S*/permissions(/.*)?"
    r"|(PUT|POST|DELETE) \S*/protections(/.*)?)$"
)
# Who holds what changes the world for every later call: these run last.
_GRANTS = re.compile(r"/(permissions|protections)(/|$)")


@dataclass
class Matrix:
    server: LiveServer
    db: Database
    world: World
    api: dict[str, httpx.Client]
    ui: dict[str, httpx.Client]


def _need(method: str, template: str) -> str:
    if _MANAGE.match(f"{method} {template}"):
        return "MANAGE"
    # The access-control table says which calls change things (rule "editor"); some POSTs
    # are open to every reader (a comment on an approval request).
    return "READ" if TABLE.get(f"{method} {template}") == "viewer" else "EDIT"


def _sign_in(url: str, username: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
    assert token
    r = c.post(
        "/login", data={"username": username, "password": password, "csrf_token": token.group(1)}
    )
    assert r.status_code == 303, r.text[:300]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/models").text)
    assert csrf
    c.headers["X-CSRF-Token"] = csrf.group(1)
    return c


@pytest.fixture(scope="module")
def matrix(
    perm_server: tuple[LiveServer, Database], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    server, db = perm_server
    info = server.app.state.db.info
    info[read_filter.DEFAULT_PERMISSION_INFO] = "MANAGE"
    tokens: dict[str, str] = {"admin": ADMIN_TOKEN}
    try:
        world = build(server.url, Path(tmp_path_factory.mktemp("matrix")), tag="mx")
        tokens["owner"] = world.tokens["editor"] or ""
        names = {"owner": world.usernames["editor"], "admin": "admin"}
        with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as admin:
            for who in ("manager", "writer", "grouped", "reader", "other"):
                names[who] = f"mx-{who}"
                admin.create_user(names[who], "editor", password=PASSWORD)
                tokens[who] = admin.create_token("mx", username=names[who]).token
        with db.session() as s:
            svc = service_accounts.create(s, "test", "mx-ci", role="editor")
            names["service"] = svc.username
            tokens["service"] = auth_service.create_token(s, "test", svc.username, "ci").value
            groups.replace_memberships(
                s, "test", auth_service.get_user(s, names["grouped"]), [TEAM]
            )
            # The job token: the scheduler's admin user, scoped to the world's run.
            auth_service.create_user(s, "test", "mx-scheduler", role="admin")
            tokens["job"] = auth_service.create_token(
                s, "test", "mx-scheduler", "job", scope=f"run:{world.ids['run_id']}"
            ).value
        ids = world.ids
        with httpx.Client(
            base_url=server.url + "/api/v1",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        ) as h:
            for kind, ref in (
                ("registered-models", MODEL),
                ("registered-models", DOOMED),
                ("experiments", ids["experiment_id"]),
                ("experiments", ids["doomed_experiment_id"]),
            ):
                for gtype, who, level in (
                    ("user", names["manager"], "MANAGE"),
                    ("user", names["writer"], "EDIT"),
                    ("user", names["reader"], "READ"),
                    ("user", names["service"], "READ"),
                    ("group", TEAM, "EDIT"),
                ):
                    r = h.put(
                        f"/{kind}/{ref}/permissions/{gtype}/{who}", json={"permission": level}
                    )
                    assert r.status_code == 201, r.text
    finally:
        info[read_filter.DEFAULT_PERMISSION_INFO] = "NONE"
    api = {
        who: httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {tok}"}, timeout=60
        )
        for who, tok in tokens.items()
    }
    ui = {
        who: _sign_in(server.url, names[who], PASSWORD if who != "admin" else ADMIN_TOKEN)
        for who in UI_CALLERS
    }
    yield Matrix(server, db, world, api, ui)
    for c in [*api.values(), *ui.values()]:
        c.close()


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


def _call(m: Matrix, who: str, method: str, template: str, path: str) -> httpx.Response:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    if _is_ui(template):
        return m.ui[who].request(method, path, data=body)
    return m.api[who].request(method, path, json=body)


def _own_run_route(template: str, path: str, m: Matrix) -> bool:
    return not _is_ui(template) and path.startswith(f"/api/v1/runs/{m.world.ids['run_id']}")


# Ids the access-control world names for things it does not hold (reached only past
# authorisation): every caller gets 404 for them.
_PLACEHOLDERS = ("upl-none", "acl-endpoint", "acl-bot")


def _missing_for_admin(m: Matrix, method: str, template: str, path: str) -> bool:
    """Whether the 404 is about a thing the world does not hold (a stage with no version, an
    upload that was never started), not about access: an admin gets it too."""
    if any(p in path for p in _PLACEHOLDERS):
        return True
    if method != "GET":
        return False
    return _call(m, "admin", method, template, path).status_code == 404


def _resource_routes(m: Matrix) -> list[tuple[str, str, str]]:
    out = []
    for method, template in _routes(m.server.app):
        rule = TABLE.get(f"{method} {template}")
        if rule not in ("viewer", "editor") or not _names_a_resource(template):
            continue
        out.append((method, template, path_for(method, template, m.world)))
    return out


def test_every_route_against_every_principal(matrix: Matrix) -> None:
    m = matrix
    routes = _resource_routes(m)
    assert len(routes) > 60, len(routes)
    wrong: list[str] = []
    callers = [*HELD, "job"]

    # Phase 1: every call that must be refused, on the untouched world; nothing changes.
    before = _audit_count(m.db)
    refused = 0
    for method, template, path in routes:
        need = _need(method, template)
        for who in callers:
            if _is_ui(template) and who not in UI_CALLERS:
                continue
            if who == "job":
                if _own_run_route(template, path, m):
                    continue
                r = _call(m, who, method, template, path)
                refused += 1
                if r.status_code != 403:
                    wrong.append(f"{method} {path} as job: {r.status_code}, not 403")
                continue
            held = HELD[who]
            if LEVEL[held] >= LEVEL[need]:
                continue
            r = _call(m, who, method, template, path)
            refused += 1
            if held == "NONE":
                ghost = _call(m, who, method, template, _ghost(path))
                if r.status_code != ghost.status_code:
                    wrong.append(
                        f"{method} {path} as {who}: {r.status_code}, but {ghost.status_code} "
                        "for objects that do not exist"
                    )
                continue
            # They can read it, so the answer may say so: refused (403), or refused for the
            # request's shape (422: a form re-rendered with its error, a body missing a field)
            # or a redirect to a page saying why; either way nothing changes (the audit log is
            # checked after every route). A 404 only for a thing the world does not hold.
            if r.status_code in (403, 422) or (r.status_code == 303 and _is_ui(template)):
                continue
            if r.status_code == 404 and _missing_for_admin(m, method, template, path):
                continue
            wrong.append(
                f"{method} {path} as {who} (holds {held}, needs {need}): "
                f"{r.status_code} {r.text[:160]}"
            )
        now = _audit_count(m.db)
        if now != before:
            wrong.append(f"{method} {path}: a refused call changed something")
            before = now

    # Phase 2: every allowed call gets past authorisation. Reads, changes, deletions last.
    order = {"GET": 0, "PUT": 1, "PATCH": 1, "POST": 2, "DELETE": 3}
    allowed = 0
    deleted = False
    for method, template, path in sorted(
        routes, key=lambda r: (bool(_GRANTS.search(r[1])), order.get(r[0], 9), r[1])
    ):
        need = _need(method, template)
        for who in callers:
            if _is_ui(template) and who not in UI_CALLERS:
                continue
            if who == "job":
                if not _own_run_route(template, path, m):
                    continue
            elif LEVEL[HELD[who]] < LEVEL[need]:
                continue
            r = _call(m, who, method, template, path)
            allowed += 1
            gone = r.status_code == 404 and (
                deleted
                or method == "DELETE"
                or "delete" in path
                or _missing_for_admin(m, method, template, path)
            )
            if r.status_code >= 500 and r.status_code != 503:
                wrong.append(f"{method} {path} as {who}: {r.status_code} {r.text[:160]}")
            elif r.status_code in (401, 403) or (r.status_code == 404 and not gone):
                wrong.append(
                    f"{method} {path} as {who} (holds "
                    f"{HELD.get(who, 'EDIT on its run')}, needs {need}): expected allow, got "
                    f"{r.status_code} {r.text[:160]}"
                )
            if method == "DELETE" or path.endswith("/delete"):
                deleted = True
    assert not wrong, f"{len(wrong)} mismatches:\n" + "\n".join(wrong)
    assert refused > 250 and allowed > 500, (refused, allowed)
