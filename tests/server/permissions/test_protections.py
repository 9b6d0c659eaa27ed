"""Protected aliases and stages over a real server (``PODSTACK_DEFAULT_PERMISSION=NONE``):
who may move them on every path (REST, MLflow-compatible API), approval requests (an allowed
user's protected move still goes through approval; a disallowed user cannot get it done
through one, even one opened before the protection), the protections API and its bad input."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from tests.conftest import LiveServer
from tests.server.permissions.conftest import GROUP, World, make_user

# The rules here are decided in Python; the read filter's SQL is checked on both databases by
# test_matrix.py, test_every_route.py and test_search_at_scale.py. One pass is enough.
pytestmark = pytest.mark.one_db

MLFLOW = "/api/2.0/mlflow"


@dataclass
class Model:
    name: str

    @property
    def path(self) -> str:
        return f"/registered-models/{self.name}"


def _ok(r: httpx.Response, *status: int) -> httpx.Response:
    assert r.status_code in (status or (200, 201, 204)), r.text
    return r


def fresh_model(world: World, *, protect: bool = True) -> Model:
    """A model of ``owner`` with versions 1 (Production, alias ``champion``) and 2 (None);
    EDIT to ``editor`` and to group ``team-a``, MANAGE to ``manager``; then (by default)
    ``champion`` and Production protected with group ``team-a``."""
    owner = world.client("owner")
    m = Model(f"prot-{uuid.uuid4().hex[:8]}")
    for _ in range(2):
        _ok(
            owner.post(
                f"{m.path}/versions",
                json={"source_run_id": world.run_id, "artifact_path": "model.pt"},
            ),
            201,
        )
    for gtype, who, level in (
        ("user", world.usernames["editor"], "EDIT"),
        ("user", world.usernames["manager"], "MANAGE"),
        ("group", GROUP, "EDIT"),
    ):
        _ok(owner.put(f"{m.path}/permissions/{gtype}/{who}", json={"permission": level}))
    _ok(owner.put(f"{m.path}/aliases/champion", json={"version": 1}))
    _ok(owner.post(f"{m.path}/versions/1/stage", json={"stage": "Production"}))
    if protect:
        _ok(owner.put(f"{m.path}/protections/aliases/champion", json={"group": GROUP}), 201)
        _ok(owner.put(f"{m.path}/protections/stages/Production", json={"group": GROUP}), 201)
    return m


def state(world: World, m: Model) -> tuple[dict[str, int], dict[int, str]]:
    """(aliases, stage of each version), read as the owner."""
    owner = world.client("owner")
    aliases = {a["alias"]: a["version"] for a in _ok(owner.get(f"{m.path}/aliases")).json()}
    stages = {v: _ok(owner.get(f"{m.path}/versions/{v}")).json()["stage"] for v in (1, 2)}
    return aliases, stages


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)))


# ---------------------------------------------------------------- the matrix

Action = Callable[[httpx.Client, httpx.Client, Model], httpx.Response]


def _set_alias(api: httpx.Client, _: httpx.Client, m: Model) -> httpx.Response:
    return api.put(f"{m.path}/aliases/champion", json={"version": 2})


def _delete_alias(api: httpx.Client, _: httpx.Client, m: Model) -> httpx.Response:
    return api.delete(f"{m.path}/aliases/champion")


def _rollback_alias(api: httpx.Client, _: httpx.Client, m: Model) -> httpx.Response:
    return api.post(f"{m.path}/aliases/champion/rollback")


def _into_stage(api: httpx.Client, _: httpx.Client, m: Model) -> httpx.Response:
    return api.post(f"{m.path}/versions/2/stage", json={"stage": "Production"})


def _out_of_stage(api: httpx.Client, _: httpx.Client, m: Model) -> httpx.Response:
    return api.post(f"{m.path}/versions/1/stage", json={"stage": "Archived"})


def _mlflow_set_alias(_: httpx.Client, ml: httpx.Client, m: Model) -> httpx.Response:
    return ml.post(
        "/registered-models/alias", json={"name": m.name, "alias": "champion", "version": "2"}
    )


def _mlflow_delete_alias(_: httpx.Client, ml: httpx.Client, m: Model) -> httpx.Response:
    return ml.request(
        "DELETE", "/registered-models/alias", json={"name": m.name, "alias": "champion"}
    )


def _mlflow_transition(_: httpx.Client, ml: httpx.Client, m: Model) -> httpx.Response:
    return ml.post(
        "/model-versions/transition-stage",
        json={"name": m.name, "version": "2", "stage": "Production"},
    )


ACTIONS: dict[str, Action] = {
    "set protected alias": _set_alias,
    "delete protected alias": _delete_alias,
    "roll back protected alias": _rollback_alias,
    "transition into protected stage": _into_stage,
    "transition out of protected stage": _out_of_stage,
    "mlflow set alias": _mlflow_set_alias,
    "mlflow delete alias": _mlflow_delete_alias,
    "mlflow transition": _mlflow_transition,
}
# owner: MANAGE by ownership; editor: an EDIT grantee outside the group; manager: a MANAGE
# grantee; grouped: a member of the named group (EDIT through it); other: an editor by role
# without any grant (the model is invisible to them: 404, it must not learn it exists).
ALLOWED = {"owner", "manager", "grouped", "admin"}
WHO = ("owner", "editor", "manager", "grouped", "other", "admin")


def _expected(who: str) -> int | None:
    """None: allowed (any 2xx); else the refusal status."""
    if who in ALLOWED:
        return None
    return 404 if who == "other" else 403


# Every principal on Podstack's own routes; on the MLflow-compatible routes (the same service
# functions behind them) one refused, one allowed and one who cannot see the model: each case
# builds a model, and the suite has a time budget.
CASES = [(a, w) for a in ACTIONS if not a.startswith("mlflow") for w in WHO] + [
    (a, w) for a in ACTIONS if a.startswith("mlflow") for w in ("editor", "grouped", "other")
]
# Refused calls change nothing (asserted), so they share one model per action.
_REFUSED_ON: dict[str, Model] = {}


def _model_for(world: World, action: str) -> Model:
    if action == "roll back protected alias":
        m = fresh_model(world, protect=False)
        _ok(world.client("owner").put(f"{m.path}/aliases/champion", json={"version": 2}))
        _ok(
            world.client("owner").put(
                f"{m.path}/protections/aliases/champion", json={"group": GROUP}
            ),
            201,
        )
        return m
    return fresh_model(world)


@pytest.mark.parametrize(("action", "who"), CASES)
def test_who_may_move_protected(
    world: World, perm_server: tuple[LiveServer, Database], who: str, action: str
) -> None:
    _, db = perm_server
    if _expected(who) is None:
        m = _model_for(world, action)
    else:
        key = f"{world.url} {action}"
        if key not in _REFUSED_ON:
            _REFUSED_ON[key] = _model_for(world, action)
        m = _REFUSED_ON[key]
    before, audit_before = state(world, m), _audit_count(db)
    r = ACTIONS[action](world.client(who), world.client(who, MLFLOW), m)
    expected = _expected(who)
    if expected is None:
        assert 200 <= r.status_code < 300, (who, action, r.status_code, r.text)
        assert state(world, m) != before
        return
    assert r.status_code == expected, (who, action, r.status_code, r.text)
    assert state(world, m) == before
    assert _audit_count(db) == audit_before
    if expected == 403:
        text = r.text
        assert "protected" in text
        assert "MANAGE" in text
        assert world.usernames["editor"] in text
        assert GROUP in text
        assert "champion" in text or "Production" in text


def test_unprotected_moves_need_only_edit(world: World) -> None:
    """A protection on one alias or stage leaves the others as they were."""
    m = fresh_model(world)
    editor = world.client("editor")
    _ok(editor.put(f"{m.path}/aliases/challenger", json={"version": 2}))
    _ok(editor.post(f"{m.path}/versions/2/stage", json={"stage": "Staging"}))
    _ok(editor.delete(f"{m.path}/aliases/challenger"))


def test_delete_version_with_protected_alias_or_stage(world: World) -> None:
    m = fresh_model(world, protect=False)
    owner, editor = world.client("owner"), world.client("editor")
    _ok(owner.put(f"{m.path}/aliases/shadow", json={"version": 2}))
    _ok(owner.post(f"{m.path}/versions/2/stage", json={"stage": "Staging"}))
    _ok(owner.put(f"{m.path}/protections/aliases/shadow", json={}), 201)
    r = editor.delete(f"{m.path}/versions/2")
    assert r.status_code == 403 and "'shadow'" in r.text, r.text
    _ok(owner.delete(f"{m.path}/protections/aliases/shadow"), 204)
    _ok(owner.put(f"{m.path}/protections/stages/staging", json={}), 201)
    r = editor.delete(f"{m.path}/versions/2")
    assert r.status_code == 403 and "Staging" in r.text, r.text
    assert _ok(owner.get(f"{m.path}/versions/2")).json()["stage"] == "Staging"
    _ok(world.client("manager").delete(f"{m.path}/versions/2"), 204)


# ---------------------------------------------------------------- approval policies


@pytest.fixture(scope="module")
def reviewer(world: World, perm_server: tuple[LiveServer, Database]) -> httpx.Client:
    _, db = perm_server
    name, token = make_user(db, "editor", "reviewer")
    world.usernames["reviewer"] = name
    return httpx.Client(
        base_url=world.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _gate(world: World, m: Model, reviewer: str) -> None:
    _ok(
        world.client("owner").put(
            f"{m.path}/permissions/user/{reviewer}", json={"permission": "READ"}
        )
    )
    _ok(
        world.client("admin").put(
            f"{m.path}/approval-policy",
            json={
                "gated_stages": ["Production"],
                "gated_aliases": ["champion"],
                "reviewers": [reviewer],
                "required_approvals": 1,
            },
        )
    )


def _pending(world: World, m: Model) -> list[dict[str, object]]:
    r = _ok(world.client("admin").get("/approval-requests", params={"status": "pending"}))
    return [q for q in r.json()["items"] if q["model_name"] == m.name]


def test_allowed_protected_move_goes_through_approval(world: World, reviewer: httpx.Client) -> None:
    m = fresh_model(world)
    _gate(world, m, world.usernames["reviewer"])
    grouped = world.client("grouped")
    r = grouped.post(f"{m.path}/versions/2/stage", json={"stage": "Production"})
    assert r.status_code == 202, r.text
    request_id = r.json()["pending_request"]["id"]
    assert state(world, m)[1][2] == "None"  # not moved before approval
    r = grouped.put(f"{m.path}/aliases/champion", json={"version": 2})
    assert r.status_code == 409 and r.json()["error"]["code"] == "APPROVAL_PENDING", r.text
    alias_request = r.json()["error"]["details"]["request_id"]
    assert state(world, m)[0]["champion"] == 1
    _ok(reviewer.post(f"/approval-requests/{request_id}/approve", json={}))
    _ok(reviewer.post(f"/approval-requests/{alias_request}/approve", json={}))
    aliases, stages = state(world, m)
    assert stages[2] == "Production" and aliases["champion"] == 2


def test_disallowed_user_cannot_open_a_request(world: World, reviewer: httpx.Client) -> None:
    m = fresh_model(world)
    _gate(world, m, world.usernames["reviewer"])
    editor = world.client("editor")
    before = state(world, m)
    r = editor.post(f"{m.path}/versions/2/stage", json={"stage": "Production"})
    assert r.status_code == 403 and "protected" in r.text, r.text
    r = editor.put(f"{m.path}/aliases/champion", json={"version": 2})
    assert r.status_code == 403 and "protected" in r.text, r.text
    r = editor.post(
        "/approval-requests", json={"model_name": m.name, "version": 2, "stage": "Production"}
    )
    assert r.status_code == 403 and "protected" in r.text, r.text
    assert _pending(world, m) == []
    assert state(world, m) == before


def test_protection_added_while_request_waits_still_holds(
    world: World, reviewer: httpx.Client
) -> None:
    """Opened by an EDIT grantee before the protection: approving it cannot carry the move out
    (the requester is checked again when it is applied); nothing changes, it stays pending."""
    m = fresh_model(world, protect=False)
    _gate(world, m, world.usernames["reviewer"])
    editor, owner = world.client("editor"), world.client("owner")
    r = editor.post(f"{m.path}/versions/2/stage", json={"stage": "Production"})
    assert r.status_code == 202, r.text
    stage_request = r.json()["pending_request"]["id"]
    r = editor.put(f"{m.path}/aliases/champion", json={"version": 2})
    assert r.status_code == 409, r.text
    alias_request = r.json()["error"]["details"]["request_id"]
    _ok(owner.put(f"{m.path}/protections/stages/Production", json={"group": GROUP}), 201)
    _ok(owner.put(f"{m.path}/protections/aliases/champion", json={"group": GROUP}), 201)
    before = state(world, m)
    for rid in (stage_request, alias_request):
        r = reviewer.post(f"/approval-requests/{rid}/approve", json={})
        assert r.status_code == 403, r.text
        assert "requester" in r.text and world.usernames["editor"] in r.text
        assert _ok(reviewer.get(f"/approval-requests/{rid}")).json()["status"] == "pending"
    assert state(world, m) == before


# ---------------------------------------------------------------- the protections API


def test_protections_api_shape_and_audit(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    _, db = perm_server
    m = fresh_model(world)
    r = _ok(world.client("editor").get(f"{m.path}/protections"))
    assert r.json() == {
        "aliases": [{"name": "champion", "group": GROUP}],
        "stages": [{"name": "Production", "group": GROUP}],
    }
    owner = world.client("owner")
    r = owner.put(f"{m.path}/protections/aliases/champion", json={"group": None})
    assert r.status_code == 200 and r.json() == {"name": "champion", "group": None}, r.text
    _ok(owner.delete(f"{m.path}/protections/stages/production"), 204)
    assert _ok(owner.get(f"{m.path}/protections")).json()["stages"] == []
    with db.session(readonly=True) as s:
        rows = s.execute(
            select(AuditEvent.action, AuditEvent.target_id, AuditEvent.before, AuditEvent.after)
            .where(AuditEvent.action.like("protection.%"), AuditEvent.target_id == m.name)
            .order_by(AuditEvent.id)
        ).all()
    assert [r[0] for r in rows] == [
        "protection.set",
        "protection.set",
        "protection.set",
        "protection.remove",
    ]
    assert rows[2][2] == {"kind": "alias", "name": "champion", "group": GROUP}
    assert rows[2][3] == {"kind": "alias", "name": "champion", "group": None}
    assert rows[3][3] is None
    # Now only MANAGE holders may move champion: the group no longer helps.
    r = world.client("grouped").put(f"{m.path}/aliases/champion", json={"version": 2})
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status", "needle"),
    [
        ("editor", "PUT", "/aliases/champion", {}, 403, "MANAGE"),
        ("editor", "DELETE", "/aliases/champion", None, 403, "MANAGE"),
        ("grouped", "PUT", "/stages/Staging", {}, 403, "MANAGE"),
        ("other", "PUT", "/aliases/champion", {}, 404, "does not exist"),
        ("other", "GET", "", None, 404, "does not exist"),
        ("owner", "PUT", "/stages/Prod", {}, 422, "Valid stages: None, Staging, Production"),
        ("owner", "DELETE", "/stages/Prod", None, 422, "Valid stages"),
        ("owner", "PUT", "/aliases/bad%20alias", {}, 422, "Invalid alias"),
        ("owner", "PUT", "/aliases/latest", {}, 422, "reserved"),
        ("owner", "PUT", "/aliases/champion", {"group": "no-such-group"}, 404, "no-such-group"),
        ("owner", "PUT", "/aliases/champion", {"grp": "x"}, 422, None),
        ("owner", "PUT", "/aliases/champion", {"group": 7}, 422, None),
        ("owner", "DELETE", "/aliases/never-protected", None, 404, "not protected"),
        ("owner", "DELETE", "/stages/Archived", None, 404, "not protected"),
    ],
)
def test_protections_bad_input_changes_nothing(
    world: World,
    perm_server: tuple[LiveServer, Database],
    who: str,
    method: str,
    path: str,
    body: dict[str, object] | None,
    status: int,
    needle: str | None,
) -> None:
    _, db = perm_server
    m = fresh_model(world)
    owner = world.client("owner")
    before = _ok(owner.get(f"{m.path}/protections")).json()
    audit_before = _audit_count(db)
    r = world.client(who).request(method, f"{m.path}/protections{path}", json=body)
    assert r.status_code == status, r.text
    assert "error" in r.json()
    if needle is not None:
        assert needle in r.json()["error"]["message"], r.text
    assert _ok(owner.get(f"{m.path}/protections")).json() == before
    assert _audit_count(db) == audit_before


def test_unknown_model(world: World) -> None:
    r = world.client("owner").put(
        "/registered-models/no-such-model/protections/aliases/champion", json={}
    )
    assert r.status_code == 404, r.text


# ---------------------------------------------------------------- the UI

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
_HX = {"HX-Request": "true"}


def _ui(world: World, who: str) -> httpx.Client:
    c = httpx.Client(base_url=world.url, follow_redirects=False, timeout=60)
    token = _CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    r = c.post("/login", data={"password": world.tokens[who], "csrf_token": token})
    assert r.status_code == 303, r.text
    return c


@pytest.mark.parametrize(("who", "refused"), [("editor", True), ("grouped", False)])
def test_ui_alias_and_stage_forms(world: World, who: str, refused: bool) -> None:
    """The web forms reach the same service: the EDIT grantee is refused with the rule's
    message, the group member moves both."""
    m = fresh_model(world)
    before = state(world, m)
    web = _ui(world, who)
    try:
        page = web.get(f"/models/{m.name}").text
        # The page says which alias is protected and who may move it.
        assert "protected</span>" in page and f"or group {GROUP} may move it" in page
        csrf = _CSRF.search(page).group(1)  # type: ignore[union-attr]
        r = web.post(
            f"/models/{m.name}/aliases",
            data={"alias": "champion", "version": "2", "csrf_token": csrf},
            headers=_HX,
        )
        if refused:
            assert r.status_code == 422 and "protected" in r.text, r.text
        else:
            assert r.status_code == 200, r.text
        r = web.post(
            f"/models/{m.name}/versions/2/stage",
            data={"stage": "Production", "csrf_token": csrf},
            headers=_HX,
        )
        if refused:
            assert r.status_code == 403 and "protected" in r.text, r.text
        else:
            assert r.status_code in (200, 303), r.text
    finally:
        web.close()
    if refused:
        assert state(world, m) == before
    else:
        aliases, stages = state(world, m)
        assert aliases["champion"] == 2 and stages[2] == "Production"
