"""MLflow's experiments/delete archives the experiment (a soft delete, restorable): like
Podstack's own delete it needs MANAGE; EDIT no longer suffices. Restore undoes it and needs
the same. Podstack's own archive (PATCH archived) is the same change and follows the rule."""

from __future__ import annotations

import pytest

from tests.server.permissions.conftest import World
from tests.server.permissions.test_matrix import MLFLOW, _fresh

# The rules here are decided in Python; the read filter's SQL is checked on both databases by
# test_matrix.py, test_every_route.py and test_search_at_scale.py. One pass is enough.
pytestmark = pytest.mark.one_db


def _archived(world: World, exp_id: str) -> bool:
    r = world.client("admin").get(f"/experiments/{exp_id}")
    assert r.status_code == 200, r.text
    return bool(r.json()["archived"])


@pytest.mark.parametrize("who", ["editor", "grouped"])
def test_mlflow_delete_and_restore_need_manage(world: World, who: str) -> None:
    exp_id = _fresh(world, "experiment")
    c = world.client(who, MLFLOW)
    r = c.post("/experiments/delete", json={"experiment_id": exp_id})
    assert r.status_code == 403, r.text
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    assert not _archived(world, exp_id)
    # An EDIT holder still renames it: only the soft delete moved up to MANAGE.
    r = c.post("/experiments/update", json={"experiment_id": exp_id, "new_name": f"{exp_id}-r"})
    assert r.status_code == 200, r.text
    manager = world.client("manager", MLFLOW)
    r = manager.post("/experiments/delete", json={"experiment_id": exp_id})
    assert r.status_code == 200, r.text
    assert _archived(world, exp_id)
    r = c.post("/experiments/restore", json={"experiment_id": exp_id})
    assert r.status_code == 403, r.text
    assert _archived(world, exp_id)
    assert manager.post("/experiments/restore", json={"experiment_id": exp_id}).status_code == 200
    assert not _archived(world, exp_id)


def test_podstack_archive_needs_manage(world: World) -> None:
    exp_id = _fresh(world, "experiment")
    r = world.client("editor").patch(f"/experiments/{exp_id}", json={"archived": True})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["details"]["required_permission"] == "MANAGE"
    assert not _archived(world, exp_id)
    r = world.client("editor").patch(f"/experiments/{exp_id}", json={"description": "d"})
    assert r.status_code == 200, r.text
    r = world.client("manager").patch(f"/experiments/{exp_id}", json={"archived": True})
    assert r.status_code == 200, r.text
    assert _archived(world, exp_id)
