"""The grants REST API: shapes, create vs update, revoke, audit, bad input (nothing changes),
a model grant that does not open the source run's experiment, and the default setting
(MANAGE) keeping today's behaviour on the suite's shared server."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from tests.conftest import LiveServer
from tests.server.permissions.conftest import EXPERIMENT, GROUP, MODEL, World, make_user

# The rules here are decided in Python; the read filter's SQL is checked on both databases by
# test_matrix.py, test_every_route.py and test_search_at_scale.py. One pass is enough.
pytestmark = pytest.mark.one_db

M = f"/registered-models/{MODEL}"


def _audit_count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)))


def test_get_shape(world: World) -> None:
    r = world.client("owner").get(f"{M}/permissions")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["owner"] == world.usernames["owner"]
    assert body["default_permission"] == "NONE"
    got = {(g["grantee_type"], g["grantee"]): g["permission"] for g in body["grants"]}
    assert got[("user", world.usernames["reader"])] == "READ"
    assert got[("group", GROUP)] == "EDIT"
    g = body["grants"][0]
    assert set(g) == {"grantee_type", "grantee", "permission", "granted_by", "granted_at"}


def test_put_creates_then_updates_then_delete_revokes(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    _, db = perm_server
    newcomer, token = make_user(db, "editor", "newcomer")
    c = world.client("owner")
    mine = httpx.Client(
        base_url=world.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert mine.get(M).status_code == 404
    before = _audit_count(db)
    r = c.put(f"{M}/permissions/user/{newcomer}", json={"permission": "READ"})
    assert r.status_code == 201, r.text
    assert r.json()["permission"] == "READ"
    assert r.json()["granted_by"] == world.usernames["owner"]
    assert mine.get(M).status_code == 200
    assert mine.patch(M, json={"description": "x"}).status_code == 403
    r = c.put(f"{M}/permissions/user/{newcomer}", json={"permission": "EDIT"})
    assert r.status_code == 200, r.text
    assert mine.patch(M, json={"description": "x"}).status_code == 200
    assert c.delete(f"{M}/permissions/user/{newcomer}").status_code == 204
    assert mine.get(M).status_code == 404
    with db.session(readonly=True) as s:
        rows = s.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.action.like("permission.%"))
            .order_by(AuditEvent.id.desc())
            .limit(3)
        ).all()
    assert list(rows) == ["permission.revoke", "permission.grant", "permission.grant"]
    assert _audit_count(db) >= before + 3
    mine.close()


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "needle"),
    [
        (f"{M}/permissions/user/nobody-xyz", {"permission": "READ"}, 404, "NOT_FOUND", "user"),
        (f"{M}/permissions/group/no-such-grp", {"permission": "READ"}, 404, "NOT_FOUND", "group"),
        (f"{M}/permissions/robot/admin", {"permission": "READ"}, 422, None, "grantee type"),
        (f"{M}/permissions/user/admin", {"permission": "OWNER"}, 422, None, None),
        (f"{M}/permissions/user/admin", {"permission": "NONE"}, 422, None, None),
        (f"{M}/permissions/user/admin", {}, 422, None, None),
        (f"{M}/permissions/user/admin", {"permission": "READ", "x": 1}, 422, None, None),
        (
            "/registered-models/never-was/permissions/user/admin",
            {"permission": "READ"},
            404,
            "NOT_FOUND",
            "does not exist",
        ),
    ],
)
def test_bad_input_changes_nothing(
    world: World,
    perm_server: tuple[LiveServer, Database],
    path: str,
    body: dict,
    status: int,
    code: str | None,
    needle: str | None,
) -> None:
    _, db = perm_server
    c = world.client("owner")
    before = c.get(f"{M}/permissions").json()
    audits = _audit_count(db)
    r = c.put(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if code:
        assert err["code"] == code
    if needle:
        assert needle in err["message"].lower(), err["message"]
    assert c.get(f"{M}/permissions").json() == before
    assert _audit_count(db) == audits


def test_revoke_of_missing_grant_is_404(world: World) -> None:
    r = world.client("owner").delete(f"{M}/permissions/user/admin-not-granted")
    assert r.status_code == 404
    assert "holds no grant" in r.json()["error"]["message"]


def test_403_message_says_what_is_needed(world: World) -> None:
    r = world.client("reader").patch(M, json={"description": "nope"})
    assert r.status_code == 403
    err = r.json()["error"]
    assert "READ" in err["message"] and "EDIT" in err["message"]
    assert err["details"]["required_permission"] == "EDIT"


def test_viewer_role_caps_a_manage_grant(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    _, db = perm_server
    name, token = make_user(db, "viewer", "capped")
    owner = world.client("owner")
    assert (
        owner.put(f"{M}/permissions/user/{name}", json={"permission": "MANAGE"}).status_code == 201
    )
    with httpx.Client(
        base_url=world.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as c:
        assert c.get(M).status_code == 200
        assert c.get(f"{M}/permissions").status_code == 403  # READ at most


def test_model_grant_does_not_open_the_experiment(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    _, db = perm_server
    name, token = make_user(db, "editor", "modelonly")
    owner = world.client("owner")
    assert owner.put(f"{M}/permissions/user/{name}", json={"permission": "READ"}).status_code == 201
    with httpx.Client(
        base_url=world.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as c:
        r = c.get(f"{M}/versions/1", params={"detail": "true"})
        assert r.status_code == 200, r.text
        assert r.json().get("source_run") is None
        assert c.get(f"{M}/versions/1/lineage").status_code == 200
        assert c.get(f"{M}/versions/1/files/model.pt").status_code == 200
        assert c.get(f"/runs/{world.run_id}").status_code == 404
        assert c.get(f"/experiments/{EXPERIMENT}").status_code == 404
    with httpx.Client(
        base_url=world.url + "/api/2.0/mlflow",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as m:
        r = m.get("/model-versions/get", params={"name": MODEL, "version": "1"})
        assert r.status_code == 200, r.text


def test_unreadable_experiment_id_is_not_shadowed_by_a_new_one(world: World) -> None:
    # Starting a run "in" an experiment one cannot read must not create a new experiment
    # named after it (that would answer later lookups by that id with the new one).
    r = world.client("other").post("/runs", json={"experiment_id": world.experiment_id})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"Experiment {world.experiment_id!r} does not exist."


def test_default_setting_keeps_todays_behaviour(
    api: httpx.Client, make_token: Callable[..., str], client_for: Callable[[str], httpx.Client]
) -> None:
    """The suite's shared server runs with the default (MANAGE): another editor may change
    and delete a model it did not create, a viewer reads it, as before."""
    creator = client_for(make_token("editor"))
    assert creator.post("/registered-models", json={"name": "shared"}).status_code == 201
    editor = client_for(make_token("editor"))
    viewer = client_for(make_token("viewer"))
    assert viewer.get("/registered-models/shared").status_code == 200
    assert "shared" in [m["name"] for m in viewer.get("/registered-models").json()["items"]]
    assert viewer.patch("/registered-models/shared", json={"description": "x"}).status_code == 403
    assert editor.patch("/registered-models/shared", json={"description": "x"}).status_code == 200
    r = editor.get("/registered-models/shared/permissions")
    assert r.status_code == 200
    assert r.json()["default_permission"] == "MANAGE"
    assert editor.delete("/registered-models/shared").status_code == 204


def test_run_backing_an_unreadable_version_is_not_deleted(world: World) -> None:
    other, admin = world.client("other"), world.client("admin")
    r = other.post("/runs", json={"experiment_id": "others-exp"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert other.put(f"/runs/{run_id}/artifacts/m.pt", content=b"x").status_code == 201
    r = admin.post(
        "/registered-models/admins-model/versions",
        json={"source_run_id": run_id, "artifact_path": "m.pt"},
    )
    assert r.status_code == 201, r.text
    r = other.delete(f"/runs/{run_id}")
    assert r.status_code == 409, r.text
    assert "admins-model" not in r.text
    assert other.get(f"/runs/{run_id}").status_code == 200


def test_the_default_permission_does_not_extend_to_grants_and_protections(
    api: httpx.Client,
    make_token: Callable[..., str],
    client_for: Callable[[str], httpx.Client],
) -> None:
    """With the shipped default (MANAGE), any editor still changes and deletes any model, but
    only its owner, MANAGE grantees and admins may change its grants or protections or move
    a protected alias; otherwise ``champion`` marked protected would protect nothing."""
    owner_name = "ada-owner"
    owner = client_for(make_token("editor", username=owner_name))
    editor = client_for(make_token("editor"))
    r = owner.post("/runs", json={"experiment_id": "default-manage"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert owner.put(f"/runs/{run_id}/artifacts/m.pt", content=b"w").status_code == 201
    for _ in range(2):
        r = owner.post(
            "/registered-models/guarded/versions",
            json={"source_run_id": run_id, "artifact_path": "m.pt"},
        )
        assert r.status_code == 201, r.text
    assert owner.put("/registered-models/guarded/aliases/champion", json={"version": 1}).is_success
    r = owner.put("/registered-models/guarded/protections/aliases/champion", json={})
    assert r.status_code == 201, r.text

    # The default still lets another editor change the model ...
    assert editor.patch("/registered-models/guarded", json={"description": "d"}).is_success
    # ... but not move the protected alias, nor grant, nor unprotect.
    r = editor.put("/registered-models/guarded/aliases/champion", json={"version": 2})
    assert r.status_code == 403, r.text
    assert "protected" in r.text and owner_name in r.text
    r = editor.put("/registered-models/guarded/permissions/user/admin", json={"permission": "READ"})
    assert r.status_code == 403, r.text
    assert "default permission" in r.json()["error"]["message"]
    r = editor.delete("/registered-models/guarded/protections/aliases/champion")
    assert r.status_code == 403, r.text
    aliases = owner.get("/registered-models/guarded/aliases").json()
    assert {a["alias"]: a["version"] for a in aliases} == {"champion": 1}

    # A MANAGE grant from the owner is MANAGE in the editor's own right.
    editor_name = editor.get("/me").json()["username"]
    r = owner.put(
        f"/registered-models/guarded/permissions/user/{editor_name}", json={"permission": "MANAGE"}
    )
    assert r.status_code == 201, r.text
    r = editor.put("/registered-models/guarded/aliases/champion", json={"version": 2})
    assert r.status_code == 200, r.text
    assert api.put("/registered-models/guarded/aliases/champion", json={"version": 1}).is_success
