"""Every route of the app that names a model, a version, an experiment, a run, an approval
request or a schedule, called by an editor who holds no grant on any of them, on a server whose
default permission is NONE: the answer is exactly the answer for objects that do not exist (the
same status; 404 once a lookup is reached, a 422 only where the request is refused for its shape
before any lookup), so the caller cannot tell that they exist; and nothing changes.

The world is the access-control matrix's (tests/reliability/world.py: a model with versions,
aliases, an approval policy and pending requests, runs, an experiment, a schedule), built while
the server's default permission is MANAGE (today's behaviour), then the default is lowered to
NONE on the running server, as an administrator would by restarting it with
``PODSTACK_DEFAULT_PERMISSION=NONE``. A route added later is swept automatically."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from podstack import MLOpsClient
from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from podstack.server.permissions import read_filter
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.reliability.test_access_control import TABLE, _is_ui, _routes
from tests.reliability.world import DOOMED, MODEL, PASSWORD, World, build, path_for

STRANGER = "stranger"
_PARAM = re.compile(r"\{([^}:]+)(?::path)?\}")
# Path parameters that name (or lead to) a model, an experiment or something of theirs.
_RESOURCE_PARAMS = {
    "version",
    "run_id",
    "request_id",
    "model",
    "alias",
    "experiment_id",
    "execution_id",
}


def _names_a_resource(template: str) -> bool:
    params = set(_PARAM.findall(template))
    if params & _RESOURCE_PARAMS:
        return True
    if "ref" in params:  # an experiment, or a schedule (which trains into an experiment)
        return True
    if "name" in params:
        return template.startswith(("/api/v1/registered-models/", "/models/"))
    return False


@pytest.fixture(scope="module")
def swept(
    perm_server: tuple[LiveServer, Database], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, Database, World, dict[str, httpx.Client]]]:
    server, db = perm_server
    info = server.app.state.db.info
    info[read_filter.DEFAULT_PERMISSION_INFO] = "MANAGE"
    try:
        world = build(server.url, Path(tmp_path_factory.mktemp("every-route")), tag="perm")
        with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as admin:
            admin.create_user(STRANGER, "editor", password=PASSWORD)
            token = admin.create_token("sweep", username=STRANGER).token
    finally:
        info[read_filter.DEFAULT_PERMISSION_INFO] = "NONE"
    api = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    ui = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', ui.get("/login").text)
    assert csrf
    r = ui.post(
        "/login",
        data={"username": STRANGER, "password": PASSWORD, "csrf_token": csrf.group(1)},
    )
    assert r.status_code == 303, r.text[:300]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', ui.get("/models").text)
    assert csrf
    ui.headers["X-CSRF-Token"] = csrf.group(1)
    yield server, db, world, {"api": api, "ui": ui}
    api.close()
    ui.close()


_HEX = re.compile(r"[0-9a-f]{16}")


def _ghost(path: str) -> str:
    """The same path naming objects that do not exist, in the same formats."""
    path = path.replace(DOOMED, "ghost-doomed").replace(MODEL, "ghost-model")
    path = path.replace("perm-nightly", "ghost-nightly").replace("perm-exp", "ghost-exp")
    return _HEX.sub("0" * 16, path)


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_an_editor_without_grants_gets_404_on_every_route_naming_a_resource(
    swept: tuple[LiveServer, Database, World, dict[str, httpx.Client]],
) -> None:
    server, db, world, clients = swept
    before = _audit_count(db)
    checked = 0
    wrong: list[str] = []
    for method, template in _routes(server.app):
        rule = TABLE.get(f"{method} {template}")
        if rule in (None, "anyone") or not _names_a_resource(template):
            continue
        path = path_for(method, template, world)
        ghost = _ghost(path)
        assert ghost != path, path
        body = {} if method in ("POST", "PUT", "PATCH") else None
        if _is_ui(template):
            real, none = (clients["ui"].request(method, p, data=body) for p in (path, ghost))
        else:
            real, none = (clients["api"].request(method, p, json=body) for p in (path, ghost))
        checked += 1
        after = _audit_count(db)
        if after != before:
            wrong.append(f"{method} {path}: changed something (audit log {before} -> {after})")
            before = after
        if real.status_code != none.status_code:
            wrong.append(
                f"{method} {path}: {real.status_code} {real.text[:160]} but "
                f"{none.status_code} for objects that do not exist"
            )
        elif 200 <= real.status_code < 300:
            wrong.append(f"{method} {path}: {real.status_code} (allowed)")
        elif real.status_code == 303:
            # The UI's forms answer with a redirect to the object's page: a 404 page.
            assert clients["ui"].get(real.headers["location"]).status_code == 404, path
    assert checked > 60, f"only {checked} routes swept: the filter of resource routes is broken"
    assert not wrong, f"{len(wrong)} of {checked} routes:\n" + "\n".join(wrong)


def test_no_list_search_or_compare_route_shows_the_stranger_anything_of_the_world(
    swept: tuple[LiveServer, Database, World, dict[str, httpx.Client]],
) -> None:
    """Every GET route without path parameters (lists, searches, counts, the notification
    bell, the home page), plus the compare views fed the world's ids in the query: no name or
    id of the world's model, runs, experiment, requests, schedule or execution appears."""
    server, _db, world, clients = swept
    ids = world.ids
    needles = [
        MODEL,
        DOOMED,
        ids["run_id"],
        ids["doomed_run_id"],
        ids["experiment_id"],
        ids["request_approve"],
        ids["execution_id"],
        "perm-nightly",
        "perm-exp",
    ]
    extra = [
        f"/runs/compare?runs={ids['run_id']}&runs={ids['doomed_run_id']}",
        f"/api/v1/runs/compare?run_ids={ids['run_id']},{ids['doomed_run_id']}",
        f"/api/v1/runs?experiment_id={ids['experiment_id']}",
        f"/api/v1/approval-requests?model={MODEL}",
        f"/api/v1/deployments?model={MODEL}",
        f"/models/suggest?q={MODEL[:5]}",
        f"/models?q={MODEL[:5]}",
    ]
    paths = [
        template
        for method, template in _routes(server.app)
        if method == "GET"
        and "{" not in template
        and TABLE.get(f"GET {template}") in ("viewer", "editor")
        and not template.endswith(("/openapi.json", "/docs", "/events"))
    ]
    checked = 0
    leaks: list[str] = []
    for path in [*paths, *extra]:
        c = clients["ui"] if _is_ui(path) else clients["api"]
        r = c.get(path)
        if r.status_code >= 500:
            leaks.append(f"GET {path}: {r.status_code}")
            continue
        checked += 1
        # An id the caller sent may be echoed back ("run-… does not exist"): no news to them.
        found = [n for n in needles if n in r.text and n not in path]
        if found:
            leaks.append(f"GET {path} ({r.status_code}) shows {found}")
    assert checked > 20, checked
    assert not leaks, "\n".join(leaks)
