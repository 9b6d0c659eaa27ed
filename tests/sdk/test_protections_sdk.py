"""Protected aliases and stages through the SDK, on both backends (embedded and a live
server): protect, list, change the group, unprotect, bad input. Who may move a protected
alias is tested over REST in tests/server/permissions/test_protections.py."""

from __future__ import annotations

import httpx
import pytest

from podstack import MLOpsClient
from podstack.errors import NotFound, ValidationFailed
from tests.server.registry.helpers import make_run

MODEL = "prot-sdk"


@pytest.fixture
def model(api: httpx.Client) -> str:
    run_id = make_run(api)
    r = api.post(
        f"/registered-models/{MODEL}/versions",
        json={"source_run_id": run_id, "artifact_path": "model.pt"},
    )
    assert r.status_code == 201, r.text
    r = api.post("/groups", json={"name": "ml-leads"})
    assert r.status_code == 201, r.text
    return MODEL


def test_protect_list_unprotect(client: MLOpsClient, model: str) -> None:
    assert client.get_model_protections(model).aliases == []
    p = client.protect_alias(model, "champion", group="ml-leads")
    assert (p.name, p.group) == ("champion", "ml-leads")
    assert client.protect_stage(model, "production").name == "Production"
    got = client.get_model_protections(model)
    assert [(a.name, a.group) for a in got.aliases] == [("champion", "ml-leads")]
    assert [(s.name, s.group) for s in got.stages] == [("Production", None)]
    # An admin holds MANAGE: the protected alias still moves for them.
    assert client.set_model_alias(model, "champion", 1).version == 1
    assert client.protect_alias(model, "champion").group is None
    client.unprotect_alias(model, "champion")
    client.unprotect_stage(model, "Production")
    got = client.get_model_protections(model)
    assert got.aliases == [] and got.stages == []


def test_bad_input(client: MLOpsClient, model: str) -> None:
    with pytest.raises(ValidationFailed, match="Valid stages"):
        client.protect_stage(model, "Prod")
    with pytest.raises(ValidationFailed, match="Invalid alias"):
        client.protect_alias(model, "bad alias")
    with pytest.raises(NotFound, match="no-such-group"):
        client.protect_alias(model, "champion", group="no-such-group")
    with pytest.raises(NotFound, match="not protected"):
        client.unprotect_alias(model, "champion")
    got = client.get_model_protections(model)
    assert got.aliases == [] and got.stages == []
