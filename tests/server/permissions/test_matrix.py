"""The permission matrix: routes x principals -> status, on a server whose default permission
is NONE. ``owner`` created the model and the experiment; ``reader``/``editor``/``manager``
hold READ/EDIT/MANAGE grants, ``grouped`` holds EDIT through a directory group, ``service`` is
a service account granted READ, ``other`` holds nothing, ``admin`` bypasses, ``job`` is a
run-scoped job token (limited by its path scope to its own run). All are editors by role.

Reads a caller may not do answer 404 (a caller must not learn the model exists); changes a
caller can see but not make answer 403. Destructive routes act on a fresh model/experiment
per case with the same grants.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.server.permissions.conftest import EXPERIMENT, GROUP, MODEL, PRINCIPALS, World

# Every principal against representative routes: the level rules are decided in Python. On
# PostgreSQL the read filter's SQL (owners, user and group grants) is exercised by
# test_every_route.py, test_search_at_scale.py and test_notifications.py.
pytestmark = pytest.mark.one_db

M = f"/registered-models/{MODEL}"
MLFLOW = "/api/2.0/mlflow"

#                 owner reader editor manager grouped other admin service job
READ_ROW = (200, 200, 200, 200, 200, 404, 200, 200, 403)
EDIT_ROW = (200, 403, 200, 200, 200, 404, 200, 403, 403)
MANAGE_ROW = (200, 403, 403, 200, 403, 404, 200, 403, 403)


def _row(values: tuple[int, ...], ok: int | None = None) -> dict[str, int]:
    out = dict(zip(PRINCIPALS, values, strict=True))
    if ok is not None:
        out = {k: (ok if v == 200 else v) for k, v in out.items()}
    return out


Call = Callable[[World, httpx.Client], httpx.Response]


def _fresh(world: World, kind: str) -> str:
    """A new model or experiment owned by ``owner``, with the world's grants."""
    owner = world.client("owner")
    name = f"tmp-{uuid.uuid4().hex[:8]}"
    if kind == "model":
        assert owner.post("/registered-models", json={"name": name}).status_code == 201
        base = f"/registered-models/{name}"
    else:
        r = owner.post("/experiments", json={"name": name})
        assert r.status_code == 201
        name = r.json()["id"]
        base = f"/experiments/{name}"
    for who, level in (("reader", "READ"), ("editor", "EDIT"), ("manager", "MANAGE")):
        r = owner.put(f"{base}/permissions/user/{world.usernames[who]}", json={"permission": level})
        assert r.status_code == 201, r.text
    r = owner.put(f"{base}/permissions/group/{GROUP}", json={"permission": "EDIT"})
    assert r.status_code == 201
    r = owner.put(
        f"{base}/permissions/user/{world.usernames['service']}", json={"permission": "READ"}
    )
    assert r.status_code == 201
    return name


CASES: dict[str, tuple[Call, dict[str, int]]] = {
    "model get": (lambda w, c: c.get(M), _row(READ_ROW)),
    "model versions list": (lambda w, c: c.get(f"{M}/versions"), _row(READ_ROW)),
    "model version get": (lambda w, c: c.get(f"{M}/versions/1"), _row(READ_ROW)),
    "model version download": (
        lambda w, c: c.get(f"{M}/versions/1/files/model.pt"),
        _row(READ_ROW),
    ),
    "model aliases list": (lambda w, c: c.get(f"{M}/aliases"), _row(READ_ROW)),
    "model lineage": (lambda w, c: c.get(f"{M}/versions/1/lineage"), _row(READ_ROW)),
    "model history": (lambda w, c: c.get(f"{M}/history"), _row(READ_ROW)),
    "model resolve uri": (
        lambda w, c: c.get("/model-versions/resolve", params={"uri": f"models:/{MODEL}/1"}),
        _row(READ_ROW),
    ),
    "model update": (
        lambda w, c: c.patch(M, json={"description": "d"}),
        _row(EDIT_ROW),
    ),
    "model version tag": (
        lambda w, c: c.post(f"{M}/versions/1/tags", json={"key": "k", "value": "v"}),
        _row(EDIT_ROW, ok=204),
    ),
    "model transition": (
        lambda w, c: c.post(f"{M}/versions/1/stage", json={"stage": "Staging"}),
        _row(EDIT_ROW),
    ),
    "model alias set": (
        lambda w, c: c.put(f"{M}/aliases/champion", json={"version": 1}),
        _row(EDIT_ROW),
    ),
    "model new version": (
        lambda w, c: c.post(
            f"{M}/versions", json={"source_run_id": w.run_id, "artifact_path": "model.pt"}
        ),
        # A version's source run must be readable too: the grouped/editor users read the
        # experiment through their grants; the service account (READ) cannot create.
        _row(EDIT_ROW, ok=201),
    ),
    "model delete": (
        lambda w, c: c.delete(f"/registered-models/{_fresh(w, 'model')}"),
        _row(MANAGE_ROW, ok=204),
    ),
    "model permissions get": (lambda w, c: c.get(f"{M}/permissions"), _row(MANAGE_ROW)),
    "model permissions put": (
        lambda w, c: c.put(f"{M}/permissions/user/admin", json={"permission": "READ"}),
        # 201 the first time, 200 after: both are success.
        _row(MANAGE_ROW),
    ),
    "experiment get": (lambda w, c: c.get(f"/experiments/{w.experiment_id}"), _row(READ_ROW)),
    "experiment get by name": (lambda w, c: c.get(f"/experiments/{EXPERIMENT}"), _row(READ_ROW)),
    "run get": (lambda w, c: c.get(f"/runs/{w.run_id}"), _row(READ_ROW)),
    "run artifact download": (
        lambda w, c: c.get(f"/runs/{w.run_id}/artifacts/model.pt"),
        _row(READ_ROW),
    ),
    "experiment update": (
        lambda w, c: c.patch(f"/experiments/{w.experiment_id}", json={"description": "d"}),
        _row(EDIT_ROW),
    ),
    "run create in experiment": (
        lambda w, c: c.post("/runs", json={"experiment_id": w.experiment_id}),
        _row(EDIT_ROW, ok=201),
    ),
    "run tag": (
        lambda w, c: c.post(f"/runs/{w.run_id}/tags", json={"tags": {"k": "v"}}),
        _row(EDIT_ROW, ok=204),
    ),
    "experiment delete": (
        lambda w, c: c.delete(f"/experiments/{_fresh(w, 'experiment')}"),
        _row(MANAGE_ROW, ok=204),
    ),
    "experiment permissions get": (
        lambda w, c: c.get(f"/experiments/{w.experiment_id}/permissions"),
        _row(MANAGE_ROW),
    ),
    "experiment permissions put": (
        lambda w, c: c.put(
            f"/experiments/{w.experiment_id}/permissions/user/admin", json={"permission": "READ"}
        ),
        _row(MANAGE_ROW),
    ),
}


def _ok(expected: int, got: int) -> bool:
    if expected in (200, 201) and got in (200, 201):
        return True
    return expected == got


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("case", list(CASES))
def test_matrix(world: World, case: str, who: str) -> None:
    call, expected = CASES[case]
    r = call(world, world.client(who))
    assert _ok(expected[who], r.status_code), f"{case} as {who}: {r.status_code} {r.text[:300]}"
    if r.status_code == 404 and who == "other" and "model" in case.split()[0]:
        # The ordinary not-found message: nothing tells it apart from a model that never was.
        body = r.json()["error"]
        assert body["code"] == "NOT_FOUND"
        if "version" not in case and "resolve" not in case:
            assert body["message"].startswith("Registered model '")
            assert body["message"].endswith("' does not exist.")


def _model_names(c: httpx.Client, **params: Any) -> list[str]:
    r = c.get("/registered-models", params=params)
    assert r.status_code == 200, r.text
    return [m["name"] for m in r.json()["items"]]


@pytest.mark.parametrize("who", PRINCIPALS)
def test_lists_and_searches_leave_out_unreadable(world: World, who: str) -> None:
    readable = READ_ROW[PRINCIPALS.index(who)] == 200
    if who == "job":
        assert world.client(who).get("/registered-models").status_code == 403
        return
    c = world.client(who)
    assert (MODEL in _model_names(c)) is readable
    assert (MODEL in _model_names(c, q="secret")) is readable
    assert (MODEL in _model_names(c, order_by="updated")) is readable
    r = c.get("/experiments")
    assert r.status_code == 200
    assert (EXPERIMENT in [e["name"] for e in r.json()["items"]]) is readable
    r = c.post("/runs/search", json={})
    assert r.status_code == 200, r.text
    assert (world.run_id in [x["id"] for x in r.json()["items"]]) is readable
    r = c.post("/runs/search", json={"experiment_ids": [world.experiment_id]})
    assert r.status_code in (200, 404), r.text
    if r.status_code == 200:
        assert (world.run_id in [x["id"] for x in r.json()["items"]]) is readable


@pytest.mark.parametrize("who", PRINCIPALS)
def test_mlflow_compatible_api(world: World, who: str) -> None:
    readable = READ_ROW[PRINCIPALS.index(who)] == 200
    c = world.client(who, MLFLOW)
    r = c.get("/registered-models/get", params={"name": MODEL})
    if who == "job":
        assert r.status_code == 403  # outside the job token's path scope
        return
    assert r.status_code == (200 if readable else 404), r.text
    if not readable:
        assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    r = c.get("/registered-models/search", params={"max_results": 1000})
    assert r.status_code == 200, r.text
    names = [m["name"] for m in r.json().get("registered_models", [])]
    assert (MODEL in names) is readable
    r = c.get("/experiments/get-by-name", params={"experiment_name": EXPERIMENT})
    assert r.status_code == (200 if readable else 404), r.text
    r = c.post("/experiments/search", json={"max_results": 1000})
    assert r.status_code == 200, r.text
    assert (EXPERIMENT in [e["name"] for e in r.json().get("experiments", [])]) is readable
    r = c.get("/runs/get", params={"run_id": world.run_id})
    assert r.status_code == (200 if readable else 404), r.text


def test_job_token_reaches_its_own_run(world: World) -> None:
    c = world.client("job")
    assert c.get(f"/runs/{world.job_run_id}").status_code == 200
    r = c.post(f"/runs/{world.job_run_id}/metrics", json={"metrics": {"loss": 0.5}})
    assert r.status_code == 200, r.text
    assert c.get(f"/runs/{world.run_id}").status_code == 403
