"""The MLflow Model Registry REST API over a real socket, in MLflow's wire shapes (what the
unmodified client sends: query parameters on GETs, JSON bodies otherwise). The client itself
drives these endpoints in test_registry_client.py; here each rule, filter and bad input is
checked directly, on both databases (the searches compile to SQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.mlflow_compat import ids
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.server.registry.helpers import make_run, state

MLMODEL = b"flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"


@pytest.fixture
def mlf(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_server.url + "/api/2.0/mlflow",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    ) as c:
        yield c


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()


def mlflow_error(r: httpx.Response, status: int, code: str, *needles: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code, body
    for needle in needles:
        assert needle.lower() in body["message"].lower(), body["message"]
    return body["message"]


def _model_run(api: httpx.Client) -> str:
    return make_run(api, {"model/MLmodel": MLMODEL, "model/model.pkl": b"pickle-bytes"})


def _create_version(mlf: httpx.Client, name: str, run_id: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "source": f"runs:/{ids.run_to_mlflow(run_id)}/model", **extra}
    return ok(mlf.post("/model-versions/create", json=body))["model_version"]


def test_registered_model_lifecycle_and_tags(mlf: httpx.Client, api: httpx.Client) -> None:
    created = ok(
        mlf.post(
            "/registered-models/create",
            json={
                "name": "fraud",
                "description": "card fraud",
                "tags": [{"key": "team", "value": "risk"}],
            },
        )
    )["registered_model"]
    assert created["name"] == "fraud" and created["description"] == "card fraud"
    assert created["tags"] == [{"key": "team", "value": "risk"}]
    assert created["user_id"] == "admin" and created["creation_timestamp"] > 0

    # Creating it again is MLflow's RESOURCE_ALREADY_EXISTS (register_model relies on it).
    mlflow_error(
        mlf.post("/registered-models/create", json={"name": "fraud"}),
        400,
        "RESOURCE_ALREADY_EXISTS",
        "already exists",
    )

    ok(mlf.post("/registered-models/set-tag", json={"name": "fraud", "key": "tier", "value": "1"}))
    ok(mlf.patch("/registered-models/update", json={"name": "fraud", "description": "v2"}))
    got = ok(mlf.get("/registered-models/get", params={"name": "fraud"}))["registered_model"]
    assert got["description"] == "v2"
    assert {t["key"]: t["value"] for t in got["tags"]} == {"team": "risk", "tier": "1"}

    # Our labels show as tags with an empty value and can be removed through MLflow.
    assert api.patch("/registered-models/fraud", json={"tags": ["gbm"]}).status_code == 200
    got = ok(mlf.get("/registered-models/get", params={"name": "fraud"}))["registered_model"]
    assert {"key": "gbm", "value": ""} in got["tags"]
    ok(mlf.request("DELETE", "/registered-models/delete-tag", json={"name": "fraud", "key": "gbm"}))
    ok(
        mlf.request(
            "DELETE", "/registered-models/delete-tag", json={"name": "fraud", "key": "tier"}
        )
    )
    got = ok(mlf.get("/registered-models/get", params={"name": "fraud"}))["registered_model"]
    assert got["tags"] == [{"key": "team", "value": "risk"}]
    assert api.get("/registered-models/fraud").json()["tags"] == []

    # The audit log names the caller for MLflow writes too.
    audit = api.get("/audit", params={"target_id": "fraud", "limit": 100}).json()["items"]
    actions = {(e["action"], e["actor"]) for e in audit}
    assert ("model.create", "admin") in actions and ("model.set_tag", "admin") in actions

    ok(mlf.request("DELETE", "/registered-models/delete", json={"name": "fraud"}))
    mlflow_error(
        mlf.get("/registered-models/get", params={"name": "fraud"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "fraud",
    )


def test_versions_stages_aliases_and_download_uri(mlf: httpx.Client, api: httpx.Client) -> None:
    run = _model_run(api)
    v1 = _create_version(
        mlf, "churn", run, description="first", tags=[{"key": "data", "value": "q1"}]
    )
    assert v1["version"] == "1" and v1["current_stage"] == "None" and v1["status"] == "READY"
    assert v1["run_id"] == ids.run_to_mlflow(run) and len(v1["run_id"]) == 32
    assert v1["source"] == f"runs:/{ids.run_to_mlflow(run)}/model"
    assert v1["tags"] == [{"key": "data", "value": "q1"}]
    # The files became the version's snapshot, as for our own registration.
    files = api.get("/registered-models/churn/versions/1/files").json()
    assert sorted(f["path"] for f in files) == ["MLmodel", "model.pkl"]

    # The mlflow-artifacts form (what register_model sends for a run's MLmodel directory).
    exp = api.get(f"/runs/{run}").json()["experiment_id"]
    uri = f"{ids.run_artifact_uri(exp, run)}/model"
    v2 = _create_version(mlf, "churn", run)
    v3 = ok(mlf.post("/model-versions/create", json={"name": "churn", "source": uri}))
    assert v3["model_version"]["version"] == "3" and v2["version"] == "2"

    moved = ok(
        mlf.post(
            "/model-versions/transition-stage",
            json={"name": "churn", "version": "1", "stage": "production"},
        )
    )["model_version"]
    assert moved["current_stage"] == "Production"
    ok(
        mlf.post(
            "/model-versions/transition-stage",
            json={
                "name": "churn",
                "version": "2",
                "stage": "Production",
                "archive_existing_versions": True,
            },
        )
    )
    got = ok(mlf.get("/model-versions/get", params={"name": "churn", "version": "1"}))
    assert got["model_version"]["current_stage"] == "Archived"

    latest = ok(mlf.post("/registered-models/get-latest-versions", json={"name": "churn"}))
    assert {(v["version"], v["current_stage"]) for v in latest["model_versions"]} == {
        ("1", "Archived"),
        ("2", "Production"),
        ("3", "None"),
    }
    only = ok(
        mlf.get(
            "/registered-models/get-latest-versions",
            params={"name": "churn", "stages": ["Production"]},
        )
    )
    assert [v["version"] for v in only["model_versions"]] == ["2"]

    ok(
        mlf.post(
            "/registered-models/alias", json={"name": "churn", "alias": "champion", "version": "3"}
        )
    )
    by_alias = ok(
        mlf.get("/registered-models/alias", params={"name": "churn", "alias": "champion"})
    )
    assert by_alias["model_version"]["version"] == "3"
    assert by_alias["model_version"]["aliases"] == ["champion"]
    model = ok(mlf.get("/registered-models/get", params={"name": "churn"}))["registered_model"]
    assert model["aliases"] == [{"alias": "champion", "version": "3"}]
    # The same alias through our own API.
    assert api.get("/registered-models/churn/aliases/champion").json()["version"] == 3

    ok(
        mlf.post(
            "/model-versions/set-tag",
            json={"name": "churn", "version": "3", "key": "k", "value": "v"},
        )
    )
    ok(
        mlf.patch(
            "/model-versions/update", json={"name": "churn", "version": "3", "description": "d"}
        )
    )
    v = ok(mlf.get("/model-versions/get", params={"name": "churn", "version": "3"}))[
        "model_version"
    ]
    assert v["description"] == "d" and {"key": "k", "value": "v"} in v["tags"]
    ok(
        mlf.request(
            "DELETE",
            "/model-versions/delete-tag",
            json={"name": "churn", "version": "3", "key": "k"},
        )
    )

    dl = ok(mlf.get("/model-versions/get-download-uri", params={"name": "churn", "version": "3"}))
    assert dl["artifact_uri"] == uri

    ok(
        mlf.request(
            "DELETE", "/registered-models/alias", json={"name": "churn", "alias": "champion"}
        )
    )
    mlflow_error(
        mlf.get("/registered-models/alias", params={"name": "churn", "alias": "champion"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "champion",
    )
    ok(mlf.request("DELETE", "/model-versions/delete", json={"name": "churn", "version": "3"}))
    mlflow_error(
        mlf.get("/model-versions/get", params={"name": "churn", "version": "3"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


def test_production_version_cannot_be_deleted(mlf: httpx.Client, api: httpx.Client) -> None:
    _create_version(mlf, "prod-model", _model_run(api))
    ok(
        mlf.post(
            "/model-versions/transition-stage",
            json={"name": "prod-model", "version": "1", "stage": "Production"},
        )
    )
    before = state(api)
    mlflow_error(
        mlf.request(
            "DELETE", "/model-versions/delete", json={"name": "prod-model", "version": "1"}
        ),
        409,
        "RESOURCE_CONFLICT",
        "Production",
        "Archived",
    )
    mlflow_error(
        mlf.request("DELETE", "/registered-models/delete", json={"name": "prod-model"}),
        409,
        "RESOURCE_CONFLICT",
        "Production",
    )
    assert state(api) == before


def test_gated_transition_opens_an_approval_request(
    mlf: httpx.Client, api: httpx.Client, make_token: Callable[..., str]
) -> None:
    make_token("editor", username="bob")
    _create_version(mlf, "gated", _model_run(api))
    r = api.put(
        "/registered-models/gated/approval-policy",
        json={"gated_stages": ["Production"], "gated_aliases": ["champion"], "reviewers": ["bob"]},
    )
    assert r.status_code == 200, r.text
    msg = mlflow_error(
        mlf.post(
            "/model-versions/transition-stage",
            json={"name": "gated", "version": "1", "stage": "Production"},
        ),
        409,
        "RESOURCE_CONFLICT",
        "approval",
    )
    pending = api.get("/approval-requests", params={"status": "pending"}).json()["items"]
    assert len(pending) == 1 and pending[0]["id"] in msg
    assert pending[0]["requester"] == "admin" and pending[0]["to_stage"] == "Production"
    # Nothing moved.
    got = ok(mlf.get("/model-versions/get", params={"name": "gated", "version": "1"}))
    assert got["model_version"]["current_stage"] == "None"
    # Asking again does not pile up requests.
    r = mlf.post(
        "/model-versions/transition-stage",
        json={"name": "gated", "version": "1", "stage": "Production"},
    )
    assert r.status_code == 409
    assert len(api.get("/approval-requests", params={"status": "pending"}).json()["items"]) == 1
    # A gated alias: the same, and the alias is not set.
    mlflow_error(
        mlf.post("/registered-models/alias", json={**V1, "name": "gated", "alias": "champion"}),
        409,
        "RESOURCE_CONFLICT",
        "approv",
    )
    mlflow_error(
        mlf.get("/registered-models/alias", params={"name": "gated", "alias": "champion"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


def test_search_filters_order_and_pages(mlf: httpx.Client, api: httpx.Client) -> None:
    run = _model_run(api)
    other = _model_run(api)
    for name, team in [("alpha", "risk"), ("Alpine", "growth"), ("beta", "risk"), ("gamma", "")]:
        body: dict[str, Any] = {"name": name}
        if team:
            body["tags"] = [{"key": "team", "value": team}]
        ok(mlf.post("/registered-models/create", json=body))
    assert api.patch("/registered-models/gamma", json={"tags": ["legacy"]}).status_code == 200
    for name in ("alpha", "alpha", "beta"):
        _create_version(mlf, name, run)
    _create_version(mlf, "alpha", other)

    def names(**params: Any) -> list[str]:
        found = ok(mlf.get("/registered-models/search", params=params))
        return [m["name"] for m in found["registered_models"]]

    assert names() == ["Alpine", "alpha", "beta", "gamma"]
    # LIKE is case-sensitive (as in MLflow), ILIKE is not, on both databases.
    assert names(filter="name LIKE 'al%'") == ["alpha"]
    assert names(filter="name ILIKE 'al%'") == ["Alpine", "alpha"]
    assert names(filter="name = 'beta'") == ["beta"]
    assert names(filter="tags.team = 'risk'") == ["alpha", "beta"]
    assert names(filter="tags.`team` != 'risk'") == ["Alpine"]
    assert names(filter="name LIKE '%a' AND tags.team LIKE 'ri%'") == ["alpha", "beta"]
    assert names(filter="tags.legacy = ''") == ["gamma"]  # a label is a tag with value ""
    assert names(order_by=["name DESC"]) == ["gamma", "beta", "alpha", "Alpine"]
    assert names(order_by=["last_updated_timestamp DESC"])[0] == "alpha"

    # Pages: every model once, in order, then no token.
    seen, token = [], None
    for _ in range(5):
        params: dict[str, Any] = {"max_results": 3}
        if token:
            params["page_token"] = token
        page = ok(mlf.get("/registered-models/search", params=params))
        seen += [m["name"] for m in page["registered_models"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == ["Alpine", "alpha", "beta", "gamma"]

    alpha = ok(mlf.get("/registered-models/get", params={"name": "alpha"}))["registered_model"]
    assert [v["version"] for v in alpha["latest_versions"]] == ["3"]

    def versions(**params: Any) -> list[tuple[str, str]]:
        found = ok(mlf.get("/model-versions/search", params=params))
        return [(v["name"], v["version"]) for v in found["model_versions"]]

    assert versions(filter="name = 'alpha'", order_by=["version_number ASC"]) == [
        ("alpha", "1"),
        ("alpha", "2"),
        ("alpha", "3"),
    ]
    mlflow_other = ids.run_to_mlflow(other)
    assert versions(filter=f"run_id = '{mlflow_other}'") == [("alpha", "3")]
    assert versions(
        filter=f"run_id IN ('{ids.run_to_mlflow(run)}') AND version_number >= 2",
        order_by=["name ASC", "version_number DESC"],
    ) == [("alpha", "2")]
    page1 = ok(mlf.get("/model-versions/search", params={"max_results": 2, "order_by": "name"}))
    assert len(page1["model_versions"]) == 2 and page1["next_page_token"]
    page2 = ok(
        mlf.get(
            "/model-versions/search",
            params={"max_results": 2, "order_by": "name", "page_token": page1["next_page_token"]},
        )
    )
    assert len(page2["model_versions"]) == 2 and "next_page_token" not in page2


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/registered-models/search", {"filter": "name LIKE"}, "ends in the middle"),
        ("/registered-models/search", {"filter": "owner = 'x'"}, "not a field"),
        ("/registered-models/search", {"filter": "name = 'a' OR name = 'b'"}, "OR is not"),
        ("/registered-models/search", {"filter": "name = beta"}, "quoted string"),
        ("/registered-models/search", {"filter": "name > 'a'"}, "operator"),
        ("/registered-models/search", {"order_by": "size DESC"}, "order_by"),
        ("/registered-models/search", {"max_results": "0"}, "max_results"),
        ("/registered-models/search", {"max_results": "1001"}, "1000"),
        ("/registered-models/search", {"page_token": "garbage"}, "page_token"),
        ("/model-versions/search", {"filter": "version_number = 'x'"}, "whole number"),
        ("/model-versions/search", {"filter": "tags.k IN ('a')"}, "operator"),
        ("/registered-models/get", {}, "name"),
        ("/model-versions/get", {"name": "x"}, "version"),
    ],
)
def test_bad_reads_are_invalid_parameter_value(
    mlf: httpx.Client, path: str, params: dict[str, Any], needle: str
) -> None:
    mlflow_error(mlf.get(path, params=params), 400, "INVALID_PARAMETER_VALUE", needle)


INV, GONE, NI = "INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "NOT_IMPLEMENTED"
RM, MV = "/registered-models/", "/model-versions/"
V1 = {"name": "solid", "version": "1"}


def test_bad_writes_change_nothing(mlf: httpx.Client, api: httpx.Client) -> None:
    run = _model_run(api)
    _create_version(mlf, "solid", run)
    before = state(api)
    src = f"runs:/{ids.run_to_mlflow(run)}"
    bad: list[tuple[str, str, dict[str, Any], int, str, str]] = [
        ("POST", RM + "create", {"name": "has space"}, 400, INV, "invalid model name"),
        ("POST", RM + "create", {}, 400, INV, "name"),
        ("POST", RM + "create", {"name": "t", "tags": [{"value": "x"}]}, 400, INV, "key"),
        ("POST", RM + "create", {"name": "t", "tags": [{"key": "k" * 300}]}, 400, INV, "tag key"),
        ("POST", RM + "rename", {"name": "solid", "new_name": "f"}, 501, NI, "not supported"),
        ("POST", RM + "set-tag", {"name": "nope", "key": "k", "value": "v"}, 404, GONE, "nope"),
        ("POST", MV + "create", {"name": "solid", "source": "s3://b/model"}, 400, INV, "runs:/"),
        ("POST", MV + "create", {"name": "solid", "source": "runs:/" + "f" * 32}, 404, GONE, "run"),
        (
            "POST",
            MV + "create",
            {"name": "solid", "source": src + "/nothing"},
            404,
            GONE,
            "nothing",
        ),
        (
            "POST",
            MV + "create",
            {"name": "solid", "source": src + "/model", "run_id": "a" * 32},
            400,
            INV,
            "does not match",
        ),
        (
            "POST",
            MV + "create",
            {"name": "solid", "source": "mlflow-artifacts:/x/y"},
            400,
            INV,
            "path",
        ),
        ("POST", MV + "transition-stage", {**V1, "stage": "Live"}, 400, INV, "valid stages"),
        (
            "POST",
            MV + "transition-stage",
            {**V1, "stage": "Archived", "archive_existing_versions": True},
            400,
            INV,
            "archive_existing",
        ),
        ("POST", MV + "transition-stage", {**V1, "version": "9", "stage": "None"}, 404, GONE, "9"),
        ("POST", RM + "alias", {**V1, "alias": "latest"}, 400, INV, "reserved"),
        ("POST", RM + "alias", {**V1, "alias": "a", "version": "x"}, 400, INV, "version"),
        ("DELETE", RM + "delete-tag", {"name": "solid", "key": "missing"}, 404, GONE, "missing"),
        ("DELETE", MV + "delete-tag", {**V1, "key": "missing"}, 404, GONE, "missing"),
        ("PATCH", RM + "update", {"name": "solid", "description": 5}, 400, INV, "description"),
        ("POST", MV + "set-tag", {**V1, "key": "k" * 300, "value": "v"}, 400, INV, "tag key"),
        ("PATCH", MV + "update", {**V1, "description": "x" * 20_001}, 400, INV, "description"),
        (
            "POST",
            MV + "create",
            {"name": "solid", "source": src + "/model", "tags": [{"key": "a\nb", "value": "v"}]},
            400,
            INV,
            "tag key",
        ),
    ]
    for method, path, body, status, code, needle in bad:
        mlflow_error(mlf.request(method, path, json=body), status, code, needle)
    r = mlf.post(
        "/registered-models/create",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    mlflow_error(r, 400, "INVALID_PARAMETER_VALUE", "json")
    assert state(api) == before


def test_roles_apply(
    live_server: LiveServer, api: httpx.Client, make_token: Callable[..., str]
) -> None:
    viewer = make_token("viewer")
    with httpx.Client(
        base_url=live_server.url + "/api/2.0/mlflow",
        headers={"Authorization": f"Bearer {viewer}"},
        timeout=60,
    ) as c:
        ok(c.get("/registered-models/search"))
        mlflow_error(
            c.post("/registered-models/create", json={"name": "nope"}), 403, "PERMISSION_DENIED"
        )
    editor = make_token("editor", username="erin")
    with httpx.Client(
        base_url=live_server.url + "/api/2.0/mlflow",
        headers={"Authorization": f"Bearer {editor}"},
        timeout=60,
    ) as c:
        ok(c.post("/registered-models/create", json={"name": "erins"}))
    audit = api.get("/audit", params={"target_id": "erins"}).json()["items"]
    assert [(e["action"], e["actor"]) for e in audit] == [("model.create", "erin")]
    with httpx.Client(base_url=live_server.url + "/api/2.0/mlflow", timeout=60) as anon:
        mlflow_error(anon.get("/registered-models/search"), 401, "UNAUTHENTICATED")
    assert api.get("/registered-models/nope").status_code == 404


def test_mlflow_writes_show_in_the_sdk(
    mlf: httpx.Client, api: httpx.Client, client: MLOpsClient
) -> None:
    run = _model_run(api)
    _create_version(mlf, "shared", run, description="via mlflow")
    ok(
        mlf.post(
            "/registered-models/alias", json={"name": "shared", "alias": "prod", "version": "1"}
        )
    )
    ok(mlf.post("/model-versions/set-tag", json={**V1, "name": "shared", "key": "k", "value": "v"}))
    version = client.get_model_by_alias("shared", "prod")
    assert version.version == 1 and version.description == "via mlflow"
    assert version.source_run_id == run and version.artifact_path == "model"
    assert version.tags == {"k": "v"}
    # ...and what the SDK writes shows to MLflow.
    client.transition_model_version_stage(model_name="shared", version=1, stage="Staging")
    got = ok(mlf.get("/model-versions/get", params={"name": "shared", "version": "1"}))
    assert got["model_version"]["current_stage"] == "Staging"


def test_other_source_forms(mlf: httpx.Client, api: httpx.Client, live_server: LiveServer) -> None:
    run = _model_run(api)
    exp = api.get(f"/runs/{run}").json()["experiment_id"]
    _create_version(mlf, "forms", run)
    # Another registered version's files, and the proxied artifact URL form.
    copied = ok(
        mlf.post("/model-versions/create", json={"name": "forms", "source": "models:/forms/1"})
    )
    in_run = f"{exp}/{ids.run_to_mlflow(run)}/artifacts/model"
    url = f"{live_server.url}/api/2.0/mlflow-artifacts/artifacts/{in_run}"
    by_url = ok(mlf.post("/model-versions/create", json={"name": "forms", "source": url}))
    for got in (copied, by_url):
        v = got["model_version"]
        files = api.get(f"/registered-models/forms/versions/{v['version']}/files").json()
        assert sorted(f["path"] for f in files) == ["MLmodel", "model.pkl"]
        assert v["run_id"] == ids.run_to_mlflow(run)
    assert copied["model_version"]["source"] == "models:/forms/1"
    # The run named by an mlflow-artifacts URI must be in the experiment it names.
    other = _model_run(api)
    wrong = f"mlflow-artifacts:/{exp}x/{ids.run_to_mlflow(other)}/artifacts/model"
    mlflow_error(
        mlf.post("/model-versions/create", json={"name": "forms", "source": wrong}),
        400,
        "INVALID_PARAMETER_VALUE",
        "not in experiment",
    )
