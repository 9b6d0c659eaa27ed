"""Deployments in the browser: the Deploy dialog on a version page (with a refused GPU type),
the MLOps > Deployments page, test inference, rollback and stop, and the deployment status on
model and version pages. Model servers are real processes, stopped after each test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from podstack import MLOpsClient
from tests.server.deployments.conftest import (
    X_TRAIN,
    log_and_register,
    make_sk_model,
    stop_all_model_servers,
)

READY_TIMEOUT = 60_000


@pytest.fixture(autouse=True)
def _stop_model_servers() -> Iterator[None]:
    yield
    stop_all_model_servers()


def _inverted() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    from tests.server.deployments.conftest import Y_TRAIN

    return DecisionTreeClassifier(random_state=0).fit(X_TRAIN, 1 - Y_TRAIN)


def test_deploy_dialog_then_deployments_page_and_test_inference(
    as_admin: Any, sdk: MLOpsClient
) -> None:
    page = as_admin
    log_and_register(sdk, "churn-model", make_sk_model())
    page.goto("/models/churn-model/versions/1")
    expect(page.locator("[data-deployment-status]")).to_contain_text("Not deployed")
    page.get_by_role("button", name="Deploy").click()
    dialog = page.locator("#deploy-dialog")
    expect(dialog.get_by_role("heading", name="Deploy churn-model v1")).to_be_visible()
    expect(dialog.get_by_label("Endpoint name")).to_have_value("churn-model")
    dialog.get_by_label("Endpoint name").fill("churn-api")
    dialog.get_by_label("GPU type").fill("T4")
    dialog.get_by_role("button", name="Deploy").click()
    error = dialog.locator(".field-error")
    expect(error).to_contain_text("does not offer GPU type 'T4'")
    expect(error).to_contain_text("It offers: cpu")
    assert sdk.list_deployments() == []

    dialog.get_by_label("GPU type").fill("cpu")
    dialog.get_by_label("Max replicas").fill("2")
    dialog.get_by_role("button", name="Deploy").click()
    # The local target does not autoscale: a range is refused, not ignored (issue 14).
    expect(dialog.locator(".field-error")).to_contain_text("cannot autoscale")
    assert sdk.list_deployments() == []
    dialog.get_by_label("Max replicas").fill("1")
    dialog.get_by_role("button", name="Deploy").click()
    page.wait_for_url(re.compile(r"/deployments/churn-api$"))
    status = page.locator("#dep-status-card [data-dep-status]")
    expect(status).to_have_text("Ready", timeout=READY_TIMEOUT)
    expect(page.locator("[data-endpoint-url]")).to_contain_text("/api/v1/endpoints/churn-api")
    expect(page.locator("[data-serving]")).to_contain_text("v1")

    # Test inference, prefilled with the model's input example.
    request = json.loads(page.get_by_label("Request (Open Inference Protocol JSON)").input_value())
    assert request["inputs"][0]["name"] == "X"
    page.get_by_role("button", name="Send request").click()
    result = page.locator("[data-inference-result]")
    expect(result).to_contain_text("Answered by version 1")
    expect(result.locator('[data-output="label"]')).to_contain_text("[0, 1]")
    page.get_by_label("Request (Open Inference Protocol JSON)").fill(
        '{"inputs": [{"name": "X", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]}'
    )
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("[data-inference-error]")).to_contain_text("expects 'FP32'")

    # MLOps > Deployments lists it with status, URL, version and replicas.
    page.get_by_role("link", name="Deployments").first.click()
    row = page.locator('tr[data-deployment="churn-api"]')
    expect(row).to_contain_text("Ready")
    expect(row).to_contain_text("churn-model")
    expect(row).to_contain_text("v1")
    expect(row).to_contain_text("1–1")
    expect(row).to_contain_text("/api/v1/endpoints/churn-api")
    expect(row.locator("[data-health]")).to_contain_text("Healthy")

    # Model and version pages show the deployment.
    page.goto("/models/churn-model")
    expect(
        page.locator('[data-deployment-status] tr[data-deployment="churn-api"]')
    ).to_contain_text("Ready")
    page.goto("/models/churn-model/versions/1")
    expect(page.locator('[data-deployment-status] tr[data-deployment="churn-api"]')).to_be_visible()


def test_rollback_and_stop_from_the_deployment_page(as_admin: Any, sdk: MLOpsClient) -> None:
    page = as_admin
    log_and_register(sdk, "fraud", make_sk_model())
    log_and_register(sdk, "fraud", _inverted())
    sdk.deploy_model("fraud", version=1, endpoint_name="fraud-api")
    sdk.update_deployment("fraud-api", version=2)

    page.goto("/deployments/fraud-api")
    expect(page.locator("[data-serving]")).to_contain_text("v2")
    page.get_by_role("button", name="Rollback to v1").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Roll fraud-api back to version 1?")
    confirm.get_by_role("button", name="Roll back").click()
    expect(page.locator("#toasts .toast").last).to_contain_text(
        "Rolling fraud-api back to version 1"
    )
    status = page.locator("#dep-status-card")
    expect(status.locator("[data-serving]")).to_have_text(
        re.compile(r"^v1$"), timeout=READY_TIMEOUT
    )
    expect(status.locator("[data-dep-status]")).to_have_text("Ready")
    assert sdk.get_deployment("fraud-api").version == 1

    page.get_by_role("button", name="Stop").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Stop").click()
    expect(page.locator("#dep-status-card [data-dep-status]")).to_have_text(
        "Stopped", timeout=READY_TIMEOUT
    )
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#dep-status-card [data-dep-status]")).to_have_text(
        "Ready", timeout=READY_TIMEOUT
    )


def test_viewers_see_no_deploy_controls(page: Any, make_user: Any, sdk: MLOpsClient) -> None:
    from tests.browser.conftest import login

    log_and_register(sdk, "vision", make_sk_model())
    sdk.deploy_model("vision", version=1, endpoint_name="vision", wait=False)
    login(page, make_user("viewer"))
    page.goto("/models/vision/versions/1")
    expect(page.locator("[data-deployment-status]")).to_be_visible()
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    page.goto("/deployments/vision")
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    expect(page.get_by_role("button", name="Send request")).to_be_visible()
