"""Reads built as Core SQL, which the ORM read filter does not narrow, on the permission
world (default NONE): each must refuse a caller who cannot read the run, model or
experiment behind it, exactly as the ORM paths do (404, as for something that does not
exist)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from podstack.errors import NotFound
from podstack.server.artifacts import service as artifacts
from podstack.server.auth.models import User
from podstack.server.auth.principal import Principal
from podstack.server.db.session import Database
from podstack.server.permissions import read_filter
from tests.conftest import LiveServer
from tests.server.permissions.conftest import World
from tests.server.permissions.test_matrix import MLFLOW


def test_a_version_cannot_be_built_from_an_unreadable_run(world: World) -> None:
    # The artifact manifest (artifacts/repository.file_or_under) is one Core query: without
    # the check, "other" could copy the artifacts of a run they cannot read into a model of
    # their own and download them from there.
    model = f"mine-{uuid.uuid4().hex[:6]}"
    other = world.client("other")
    r = other.post(
        f"/registered-models/{model}/versions",
        json={"source_run_id": world.run_id, "artifact_path": "model.pt"},
    )
    assert r.status_code == 404, r.text
    assert r.json()["error"]["message"] == f"Run {world.run_id!r} does not exist."
    assert other.get(f"/registered-models/{model}").status_code == 404
    # The MLflow-compatible route goes through the same service.
    r = world.client("other", MLFLOW).post(
        "/model-versions/create",
        json={"name": model, "source": f"runs:/{world.run_id}/model.pt", "run_id": world.run_id},
    )
    assert r.status_code == 404, r.text
    # Someone who reads the run's experiment still can.
    r = world.client("reader").post(
        f"/registered-models/{model}/versions",
        json={"source_run_id": world.run_id, "artifact_path": "model.pt"},
    )
    assert r.status_code == 201, r.text


def test_the_artifact_manifest_refuses_an_unreadable_run(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    # The service call itself: the HTTP route above is also refused later by version signing
    # (provenance reads the run through the ORM), which must not be the only guard.
    _, db = perm_server
    # This Database is the test's own handle on the server's database: give it the server's
    # setting (the app sets it on its own handle at start).
    db.info[read_filter.DEFAULT_PERMISSION_INFO] = "NONE"
    for who, readable in (("other", False), ("reader", True)):
        with db.session() as s:
            user = s.scalar(select(User).where(User.username == world.usernames[who]))
            assert user is not None
            principal = Principal(username=user.username, role=user.role, user_id=user.id)
        with db.session(principal=principal) as s:
            if readable:
                assert [e.path for e in artifacts.manifest(s, world.run_id, "model.pt")] == [
                    "model.pt"
                ]
            else:
                with pytest.raises(NotFound, match="does not exist"):
                    artifacts.manifest(s, world.run_id, "model.pt")
