"""Aliases and models:/ references over REST: set, move, delete, reserved names, time travel,
rollback, and resolution of every reference form."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.server.registry.helpers import error, make_run, new_version, state, transition


def _at() -> str:
    time.sleep(0.01)
    t = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    return t


def _alias(api: httpx.Client, model: str, alias: str, version: object) -> httpx.Response:
    return api.put(f"/registered-models/{model}/aliases/{alias}", json={"version": version})


@pytest.fixture
def three(api: httpx.Client) -> str:
    run = make_run(api)
    for _ in range(3):
        new_version(api, "aliased", run)
    return "aliased"


def test_set_move_list_get_delete(api: httpx.Client, three: str) -> None:
    r = _alias(api, three, "latest-prod", 3)
    assert r.status_code == 200
    assert r.json()["alias"] == "latest-prod" and r.json()["version"] == 3
    got = api.get(f"/registered-models/{three}/aliases/latest-prod").json()
    assert got["version"] == 3 and got["aliases"] == ["latest-prod"]
    assert _alias(api, three, "latest-prod", 2).json()["version"] == 2  # moves
    _alias(api, three, "best-accuracy", 2)
    listed = api.get(f"/registered-models/{three}/aliases").json()
    assert [(a["alias"], a["version"]) for a in listed] == [
        ("best-accuracy", 2),
        ("latest-prod", 2),
    ]
    assert api.get(f"/registered-models/{three}/versions/2").json()["aliases"] == [
        "best-accuracy",
        "latest-prod",
    ]
    assert api.get(f"/registered-models/{three}").json()["aliases"] == {
        "best-accuracy": 2,
        "latest-prod": 2,
    }
    # Setting the same target again is a no-op (no history entry).
    n_hist = len(api.get(f"/registered-models/{three}/history").json()["items"])
    _alias(api, three, "latest-prod", 2)
    assert len(api.get(f"/registered-models/{three}/history").json()["items"]) == n_hist
    assert api.delete(f"/registered-models/{three}/aliases/latest-prod").status_code == 204
    error(
        api.get(f"/registered-models/{three}/aliases/latest-prod"),
        404,
        "NOT_FOUND",
        "no alias 'latest-prod'",
        "best-accuracy",
    )


def test_reserved_aliases_resolve_but_cannot_be_set(api: httpx.Client, three: str) -> None:
    assert api.get(f"/registered-models/{three}/aliases/latest").json()["version"] == 3
    assert api.get(f"/registered-models/{three}/aliases/v2").json()["version"] == 2
    assert api.get(f"/registered-models/{three}/aliases/V1").json()["version"] == 1
    error(api.get(f"/registered-models/{three}/aliases/v9"), 404, "NOT_FOUND", "no version 9")
    before = state(api)
    for name in ["latest", "LATEST", "v1", "V42"]:
        error(_alias(api, three, name, 1), 422, "VALIDATION_ERROR", "reserved")
        error(
            api.delete(f"/registered-models/{three}/aliases/{name}"),
            422,
            "VALIDATION_ERROR",
            "reserved",
        )
    assert state(api) == before
    # latest follows deletions of the highest version.
    api.delete(f"/registered-models/{three}/versions/3")
    assert api.get(f"/registered-models/{three}/aliases/latest").json()["version"] == 2


@pytest.mark.parametrize("bad", ["has space", "dot.name", "a" * 129, "semi;colon", "ünï"])
def test_invalid_alias_names(api: httpx.Client, three: str, bad: str) -> None:
    before = state(api)
    error(_alias(api, three, bad, 1), 422, "VALIDATION_ERROR", "Invalid alias", "letters, digits")
    assert state(api) == before


def test_alias_targets_must_be_versions_of_the_same_model(api: httpx.Client, three: str) -> None:
    run = make_run(api)
    new_version(api, "other", run)
    before = state(api)
    error(
        _alias(api, three, "x", "models:/other/1"),
        422,
        "VALIDATION_ERROR",
        "version of model 'other'",
        "its own model",
    )
    error(_alias(api, three, "x", 7), 404, "NOT_FOUND", "no version 7")
    error(_alias(api, three, "x", 0), 422, "VALIDATION_ERROR", "positive integer")
    error(_alias(api, three, "x", "two"), 422, "VALIDATION_ERROR", "positive integer")
    error(_alias(api, three, "x", True), 422, "VALIDATION_ERROR")
    error(_alias(api, "ghost", "x", 1), 404, "NOT_FOUND", "ghost")
    assert state(api) == before
    # A URI of the same model is fine.
    assert _alias(api, three, "x", f"models:/{three}/latest").json()["version"] == 3


def test_alias_at_a_date_and_rollback(api: httpx.Client, three: str) -> None:
    t0 = _at()
    _alias(api, three, "prod", 1)
    t1 = _at()
    _alias(api, three, "prod", 2)
    t2 = _at()
    _alias(api, three, "prod", 3)
    t3 = _at()

    def at(when: str) -> httpx.Response:
        return api.get(f"/registered-models/{three}/aliases/prod", params={"at": when})

    error(at(t0), 404, "NOT_FOUND", "did not point at any version")
    assert [at(t).json()["version"] for t in (t1, t2, t3)] == [1, 2, 3]
    # latest at a date: the highest version created by then.
    assert (
        api.get(f"/registered-models/{three}/aliases/latest", params={"at": t0}).json()["version"]
        == 3
    )

    r = api.post(f"/registered-models/{three}/aliases/prod/rollback")
    assert r.status_code == 200 and r.json()["version"] == 2
    r = api.post(f"/registered-models/{three}/aliases/prod/rollback")
    assert r.json()["version"] == 1  # keeps walking back
    error(
        api.post(f"/registered-models/{three}/aliases/prod/rollback"),
        409,
        "CONFLICT",
        "no earlier version",
    )
    # The rollbacks are history too.
    t4 = _at()
    assert at(t4).json()["version"] == 1
    hist = api.get(f"/registered-models/{three}/history").json()["items"]
    assert [h["alias_action"] for h in hist[:2]] == ["rollback", "rollback"]
    error(api.post(f"/registered-models/{three}/aliases/nope/rollback"), 404, "NOT_FOUND")


def test_rollback_skips_deleted_versions_and_deletion_drops_aliases(
    api: httpx.Client, three: str
) -> None:
    _alias(api, three, "prod", 1)
    _alias(api, three, "prod", 2)
    _alias(api, three, "prod", 3)
    api.delete(f"/registered-models/{three}/versions/2")
    assert api.post(f"/registered-models/{three}/aliases/prod/rollback").json()["version"] == 1
    _alias(api, three, "stable", 3)
    t = _at()
    api.delete(f"/registered-models/{three}/versions/3")
    error(api.get(f"/registered-models/{three}/aliases/stable"), 404, "NOT_FOUND")
    error(
        api.get(f"/registered-models/{three}/aliases/stable", params={"at": t}),
        404,
        "NOT_FOUND",
        "since been deleted",
    )


def test_resolve_every_reference_form(api: httpx.Client, three: str) -> None:
    transition(api, three, 2, "Production")
    transition(api, three, 1, "Staging")
    _alias(api, three, "champion", 1)

    def resolve(uri: str, **extra: str) -> httpx.Response:
        return api.get("/model-versions/resolve", params={"uri": uri, **extra})

    assert resolve(f"models:/{three}/3").json()["version"] == 3
    assert resolve(f"models:/{three}/Production").json()["version"] == 2
    assert resolve(f"models:/{three}/staging").json()["version"] == 1
    assert resolve(f"models:/{three}/latest").json()["version"] == 3
    assert resolve(f"models:/{three}@champion").json()["version"] == 1
    assert resolve(f"models:/{three}@latest").json()["version"] == 3
    assert resolve(f"models:/{three}@v2").json()["version"] == 2
    assert resolve(f"models:/{three}/2", model_name=three).json()["files"]
    error(resolve(f"models:/{three}/2", model_name="other"), 404, "NOT_FOUND", "other")
    for bad, needle in [
        ("runs:/x/1", "must start with 'models:/'"),
        (f"models:/{three}", "names no version"),
        (f"models:/{three}/Live", "neither a version number"),
        (f"models:/{three}/1/2", "exactly one"),
        (f"models:/{three}/0", "positive integer"),
        (f"models:/{three}@bad alias", "not a valid alias"),
        ("models:/bad name/1", "invalid model name"),
    ]:
        error(resolve(bad), 422, "VALIDATION_ERROR", needle)
    error(resolve(f"models:/{three}/9"), 404, "NOT_FOUND")
    error(resolve(f"models:/{three}/Archived"), 404, "NOT_FOUND", "no version in stage Archived")
    error(resolve(f"models:/{three}@missing"), 404, "NOT_FOUND", "no alias")
    error(resolve("models:/ghost/1"), 404, "NOT_FOUND", "ghost")
