"""Grants through the SDK, on both backends (embedded and a live server): read, grant (new and
replaced), revoke, for models and experiments; bad input refused with nothing changed. Who
may do what with a grant is the server's matter (tests/server/permissions/)."""

from __future__ import annotations

import pytest

from podstack import MLOpsClient
from podstack.errors import NotFound, ValidationFailed
from podstack.schemas.permissions import Grant, ResourcePermissions


def _grants(perms: ResourcePermissions) -> dict[tuple[str, str], str]:
    return {(g.grantee_type, g.grantee): g.permission for g in perms.grants}


def test_model_grants_round_trip(client: MLOpsClient) -> None:
    client.create_user("bob", "editor")
    client.create_group("ml-reviewers", members=["bob"])
    client.register_model("churn.v2")
    perms = client.get_model_permissions("churn.v2")
    assert isinstance(perms, ResourcePermissions)
    assert perms.default_permission == "MANAGE"  # the suite's server keeps today's default
    assert perms.grants == []

    g = client.grant_model_permission("churn.v2", user="bob", permission="read")
    assert isinstance(g, Grant)
    assert (g.grantee_type, g.grantee, g.permission) == ("user", "bob", "READ")
    client.grant_model_permission("churn.v2", group="ml-reviewers")  # READ by default
    g = client.grant_model_permission("churn.v2", user="bob", permission="EDIT")
    assert g.permission == "EDIT"
    assert _grants(client.get_model_permissions("churn.v2")) == {
        ("user", "bob"): "EDIT",
        ("group", "ml-reviewers"): "READ",
    }

    client.revoke_model_permission("churn.v2", user="bob")
    assert _grants(client.get_model_permissions("churn.v2")) == {("group", "ml-reviewers"): "READ"}
    with pytest.raises(NotFound, match="holds no grant"):
        client.revoke_model_permission("churn.v2", user="bob")


def test_experiment_grants_by_name_id_or_object(client: MLOpsClient) -> None:
    client.create_user("carol", "viewer")
    exp = client.create_experiment("churn-training")
    g = client.grant_experiment_permission("churn-training", user="carol", permission="MANAGE")
    assert g.permission == "MANAGE"
    by_id = client.get_experiment_permissions(exp.id)
    by_obj = client.get_experiment_permissions(exp)
    assert _grants(by_id) == _grants(by_obj) == {("user", "carol"): "MANAGE"}
    client.revoke_experiment_permission(exp, user="carol")
    assert client.get_experiment_permissions("churn-training").grants == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "neither"),
        ({"user": "bob", "group": "g"}, "both"),
        ({"user": "  "}, "non-empty"),
        ({"group": ""}, "non-empty"),
    ],
)
def test_grantee_must_be_exactly_one(
    client: MLOpsClient, kwargs: dict[str, str], needle: str
) -> None:
    client.create_user("bob", "editor")
    client.register_model("m")
    with pytest.raises(ValueError, match=needle):
        client.grant_model_permission("m", **kwargs)
    with pytest.raises(ValueError, match=needle):
        client.revoke_experiment_permission("e", **kwargs)
    assert client.get_model_permissions("m").grants == []


def test_bad_input_is_refused_and_changes_nothing(client: MLOpsClient) -> None:
    client.create_user("bob", "editor")
    client.register_model("m")
    client.grant_model_permission("m", user="bob", permission="READ")
    before = client.get_model_permissions("m")

    with pytest.raises(NotFound, match="User 'ghost' does not exist"):
        client.grant_model_permission("m", user="ghost")
    with pytest.raises(NotFound, match="Group 'nope' does not exist"):
        client.grant_model_permission("m", group="nope")
    with pytest.raises(ValidationFailed):
        client.grant_model_permission("m", user="bob", permission="OWNER")
    with pytest.raises(ValidationFailed):
        client.grant_model_permission("m", user="bob", permission="NONE")
    with pytest.raises(NotFound, match="Registered model 'absent' does not exist"):
        client.grant_model_permission("absent", user="bob")
    with pytest.raises(NotFound, match="Registered model 'absent'"):
        client.get_model_permissions("absent")
    with pytest.raises(NotFound, match="Experiment 'absent'"):
        client.get_experiment_permissions("absent")
    with pytest.raises(NotFound):
        client.revoke_model_permission("m", group="ml")

    assert client.get_model_permissions("m") == before
