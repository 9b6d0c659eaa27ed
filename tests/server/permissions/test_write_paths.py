"""Changes that reach a model or an experiment through another capability: serving a model
version (deployments) needs EDIT on the model, and a schedule that trains into an experiment
needs EDIT on that experiment. On the permission world (default NONE): ``reader`` holds READ,
``editor`` EDIT, ``other`` nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from podstack.server.db.base import new_id, utcnow
from podstack.server.db.session import Database
from podstack.server.deployments.models import Deployment
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.server.schedules.models import Schedule
from tests.conftest import LiveServer
from tests.server.permissions.conftest import EXPERIMENT, MODEL, World

# The rules here are decided in Python; the read filter's SQL is checked on both databases by
# test_matrix.py, test_every_route.py and test_search_at_scale.py. One pass is enough.
pytestmark = pytest.mark.one_db

HOOK = {"type": "webhook", "url": "https://ci.example.com/hook", "secret": "s" * 20}


@pytest.fixture(scope="module")
def deployment(world: World, perm_server: tuple[LiveServer, Database]) -> Iterator[str]:
    """A stopped deployment of MODEL version 1 (with a previous version to roll back to),
    inserted as a row: what is checked here happens before anything would be served."""
    _, db = perm_server
    name = f"dep-{uuid.uuid4().hex[:6]}"
    with db.session() as s:
        m = s.scalar(select(RegisteredModel).where(RegisteredModel.name == MODEL))
        assert m is not None
        mv = s.scalar(select(ModelVersion).where(ModelVersion.model_id == m.id))
        assert mv is not None
        now = utcnow()
        s.add(
            Deployment(
                id=new_id("dep"),
                name=name,
                model_id=m.id,
                version_id=mv.id,
                version=mv.version,
                previous_version=mv.version,
                target="local",
                format="pickle",
                desired_state="stopped",
                status="stopped",
                health=[],
                created_by=world.usernames["owner"],
                created_at=now,
                updated_at=now,
            )
        )
    yield name


def _state(db: Database, name: str) -> tuple[str, int, bool]:
    with db.session() as s:
        d = s.scalar(select(Deployment).where(Deployment.name == name))
        assert d is not None
        return d.desired_state, d.min_replicas, d.production


def test_creating_a_deployment_needs_edit_on_the_model(world: World) -> None:
    body = {"endpoint_name": f"ep-{uuid.uuid4().hex[:6]}", "model_name": MODEL, "version": 1}
    r = world.client("reader").post("/deployments", json=body)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "PERMISSION_DENIED"
    assert err["details"]["required_permission"] == "EDIT"
    assert "READ" in err["message"] and MODEL in err["message"]
    r = world.client("other").post("/deployments", json=body)
    assert r.status_code == 404, r.text
    # An editor passes the permission check and meets the next rule (the version's file is
    # not a servable model), which shows the check let them through.
    r = world.client("editor").post("/deployments", json=body)
    assert r.status_code != 403, r.text
    admin = world.client("admin")
    assert admin.get(f"/deployments/{body['endpoint_name']}").status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", "", {"min_replicas": 2}),
        ("POST", "/rollback", None),
        ("POST", "/stop", None),
        ("POST", "/start", None),
        ("DELETE", "", None),
    ],
)
def test_changing_a_deployment_needs_edit_on_its_model(
    world: World,
    perm_server: tuple[LiveServer, Database],
    deployment: str,
    method: str,
    suffix: str,
    body: dict[str, int] | None,
) -> None:
    _, db = perm_server
    before = _state(db, deployment)
    reader = world.client("reader")
    assert reader.get(f"/deployments/{deployment}").status_code == 200  # READ sees it
    r = reader.request(method, f"/deployments/{deployment}{suffix}", json=body)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["details"]["required_permission"] == "EDIT"
    r = world.client("other").request(method, f"/deployments/{deployment}{suffix}", json=body)
    assert r.status_code == 404, r.text
    assert _state(db, deployment) == before


def _schedule(world: World, who: str, experiment: str, **over: object) -> dict[str, object]:
    return {
        "name": f"sch-{uuid.uuid4().hex[:6]}",
        "experiment_id": experiment,
        "cron": "0 2 * * *",
        "executor": HOOK,
        **over,
    }


def test_a_schedule_into_an_experiment_needs_edit_on_it(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    _, db = perm_server
    body = _schedule(world, "reader", EXPERIMENT)
    r = world.client("reader").post("/schedules", json=body)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["details"]["required_permission"] == "EDIT"
    # Cannot read it: the same answer as for an experiment that does not exist.
    r = world.client("other").post("/schedules", json=body)
    assert r.status_code == 422, r.text
    assert "does not exist" in r.json()["error"]["message"]
    with db.session() as s:
        assert s.scalar(select(Schedule).where(Schedule.name == body["name"])) is None
    r = world.client("editor").post("/schedules", json=body)
    assert r.status_code == 201, r.text


def test_pointing_a_schedule_at_a_read_only_experiment_is_refused(world: World) -> None:
    # The reader's own experiment, then moved to one they only read.
    reader = world.client("reader")
    r = reader.post("/experiments", json={"name": f"mine-{uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    mine = r.json()["id"]
    r = reader.post("/schedules", json=_schedule(world, "reader", mine))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = reader.patch(f"/schedules/{sid}", json={"experiment_id": EXPERIMENT})
    assert r.status_code == 403, r.text
    assert reader.get(f"/schedules/{sid}").json()["experiment_id"] == mine


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", "", {"cron": "0 3 * * *"}),
        ("POST", "/pause", None),
        ("POST", "/trigger", None),
        ("DELETE", "", None),
    ],
)
def test_changing_or_running_a_schedule_needs_edit_on_its_experiment(
    world: World, method: str, suffix: str, body: dict[str, str] | None
) -> None:
    r = world.client("editor").post("/schedules", json=_schedule(world, "editor", EXPERIMENT))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    reader = world.client("reader")
    before = reader.get(f"/schedules/{sid}")
    assert before.status_code == 200, before.text
    r = reader.request(method, f"/schedules/{sid}{suffix}", json=body)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["details"]["required_permission"] == "EDIT"
    assert (
        world.client("other").request(method, f"/schedules/{sid}{suffix}", json=body).status_code
        == 404
    )
    assert reader.get(f"/schedules/{sid}").json() == before.json()
    assert reader.get(f"/schedules/{sid}/executions").json()["items"] == []


def test_cancelling_an_execution_needs_edit_on_its_experiment(world: World) -> None:
    editor = world.client("editor")
    r = editor.post("/schedules", json=_schedule(world, "editor", EXPERIMENT, paused=True))
    assert r.status_code == 201, r.text
    r = editor.post(f"/schedules/{r.json()['id']}/trigger")
    assert r.status_code in (200, 201, 202), r.text
    ex_id = r.json()["id"]
    r = world.client("reader").post(f"/schedule-executions/{ex_id}/cancel")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["details"]["required_permission"] == "EDIT"
    r = world.client("other").post(f"/schedule-executions/{ex_id}/cancel")
    assert r.status_code == 404, r.text
    assert world.client("admin").get(f"/schedule-executions/{ex_id}").json()["status"] == "queued"
    r = editor.post(f"/schedule-executions/{ex_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
