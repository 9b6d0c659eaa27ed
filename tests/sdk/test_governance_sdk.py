"""Governance through the SDK on both backends: a gated alias move raises ApprovalPending
(409, also an ApprovalRequired) with the request id and changes nothing until approved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from podstack import MLOpsClient
from podstack.errors import ApprovalPending, ApprovalRequired, Conflict
from podstack.server.db.session import Database
from tests.conftest import LiveServer
from tests.server.approvals.helpers import make_user

MODEL = "gov-model"


@pytest.fixture
def reviewer(db: Database, live_server: LiveServer) -> Iterator[MLOpsClient]:
    c = MLOpsClient(api_token=make_user(db, "rev", "editor"), url=live_server.url)
    yield c
    c.close()


def _version(client: MLOpsClient, tmp_path: Path) -> int:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    with client.start_run(experiment_id="gov-exp") as run:
        run.log_artifact(str(weights))
    return client.create_model_version(
        model_name=MODEL, source_run_id=run.id, artifact_path="model.pt"
    ).version


def test_gated_alias_move_raises_approval_pending_until_approved(
    client: MLOpsClient, reviewer: MLOpsClient, tmp_path: Path
) -> None:
    v = _version(client, tmp_path)
    policy = client.set_approval_policy(MODEL, reviewers=["rev"], gated_aliases=["champion"])
    assert policy.gated_aliases == ["champion"]
    with pytest.raises(ApprovalPending) as info:
        client.set_model_alias(MODEL, "champion", v)
    exc = info.value
    assert isinstance(exc, ApprovalRequired) and isinstance(exc, Conflict)
    assert exc.status == 409 and exc.request_id and exc.request_id in exc.message
    assert client.list_model_aliases(MODEL) == []
    req = client.get_approval_request(exc.request_id)
    assert (req.kind, req.status, req.subject) == ("alias", "pending", f"alias:{MODEL}/champion")
    reviewer.approve_request(exc.request_id)
    assert [(a.alias, a.version) for a in client.list_model_aliases(MODEL)] == [("champion", v)]


def test_production_endpoint_refuses_an_unapproved_version(
    client: MLOpsClient, reviewer: MLOpsClient
) -> None:
    from tests.server.deployments.conftest import X_TRAIN, make_sk_model

    with client.start_run(experiment_id="gov-exp") as run:
        run.log_model(make_sk_model(), "model", input_example=X_TRAIN[:2])
    v = client.create_model_version(model_name=MODEL, source_run_id=run.id, artifact_path="model")
    client.set_approval_policy(MODEL, reviewers=["rev"])
    with pytest.raises(ApprovalPending) as info:
        client.deploy_model(MODEL, version=v.version, endpoint_name="gov-api", production=True)
    assert client.list_deployments() == []
    req = client.get_approval_request(info.value.request_id)
    assert (req.kind, req.action["endpoint_name"], req.version) == ("deployment", "gov-api", 1)
    assert req.action["body"]["production"] is True
