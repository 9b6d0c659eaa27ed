"""Real model servers over HTTP: a scikit-learn model converted to ONNX, logged with
run.log_model, registered, deployed on the local target and called through the Open Inference
Protocol: raw HTTP, the SDK, and tritonclient. (TorchScript end to end: the seed's Integration
Example in tests/sdk/test_deployments_sdk.py.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from podstack import MLOpsClient
from tests.conftest import ADMIN_TOKEN

from .conftest import X_TRAIN, Y_TRAIN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_sklearn_onnx_deployment_serves_correct_predictions(
    sdk: MLOpsClient, register: Any, sk_model: Any
) -> None:
    v = register("iris-lite", sk_model)
    dep = sdk.deploy_model("iris-lite", version=v.version, endpoint_name="iris-api")
    assert dep.status == "ready"
    assert dep.version == v.version
    assert dep.format == "onnx"  # skl2onnx conversion is preferred over the pickle
    assert dep.endpoint_url and dep.endpoint_url.endswith("/api/v1/endpoints/iris-api")
    assert dep.health is not None and dep.health.ok

    with httpx.Client(base_url=dep.endpoint_url, headers=AUTH, timeout=30) as http:
        assert http.get("/v2/health/live").status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/v2/models/iris-api/ready").json()["ready"] is True
        meta = http.get("/v2/models/iris-api").json()
        assert meta["name"] == "iris-api"
        assert meta["versions"] == [str(v.version)]
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 2]}]
        assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}

        body = {
            "inputs": [
                {"name": "X", "datatype": "FP32", "shape": [4, 2], "data": X_TRAIN[:4].tolist()}
            ],
            "outputs": [{"name": "label"}],
        }
        r = http.post("/v2/models/iris-api/infer", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model_name"] == "iris-api"
        assert out["model_version"] == str(v.version)
        assert out["outputs"][0]["name"] == "label"
        assert out["outputs"][0]["data"] == Y_TRAIN[:4].tolist()

        # Wrong datatype, wrong shape, inconsistent data: 400 in the protocol's error shape.
        bad_type = {"inputs": [{**body["inputs"][0], "datatype": "INT64"}]}
        r = http.post("/v2/models/iris-api/infer", json=bad_type)
        assert r.status_code == 400
        assert set(r.json()) == {"error"} and "FP32" in r.json()["error"]
        bad_shape = {"inputs": [{**body["inputs"][0], "shape": [2, 4]}]}
        r = http.post("/v2/models/iris-api/infer", json=bad_shape)
        assert r.status_code == 400 and "shape" in r.json()["error"]
        bad_count = {"inputs": [{**body["inputs"][0], "shape": [3, 2]}]}
        r = http.post("/v2/models/iris-api/infer", json=bad_count)
        assert r.status_code == 400 and "values" in r.json()["error"]
        r = http.post("/v2/models/other/infer", json=body)
        assert r.status_code == 404 and "iris-api" in r.json()["error"]
        r = http.post("/v2/models/iris-api/infer", content=b"{nope")
        assert r.status_code == 400 and "JSON" in r.json()["error"]

    # The SDK: numpy in, arrays out, datatypes taken from the model's signature.
    res = sdk.predict("iris-api", X_TRAIN[:4])
    assert res.model_version == str(v.version)
    assert res.as_dict()["label"].tolist() == Y_TRAIN[:4].tolist()
    with pytest.raises(Exception) as exc:
        sdk.predict("iris-api", {"X": [[1.0, 2.0, 3.0]]})
    assert exc.value.code == "BAD_REQUEST" and "shape" in exc.value.message


def test_standard_protocol_client_works(sdk: MLOpsClient, register: Any, sk_model: Any) -> None:
    """tritonclient (NVIDIA's Open Inference Protocol client) against the endpoint URL."""
    # Dev extras: a missing one must fail, not skip, in CI.
    import numpy as np
    import tritonclient.http as httpclient

    register("std-client", sk_model)
    dep = sdk.deploy_model("std-client", version=1, endpoint_name="std-client")
    assert dep.endpoint_url is not None
    url = dep.endpoint_url.removeprefix("http://")
    client = httpclient.InferenceServerClient(url=url)
    try:
        assert client.is_server_live(headers=AUTH)
        assert client.is_model_ready("std-client", headers=AUTH)
        meta = client.get_model_metadata("std-client", headers=AUTH)
        assert meta["inputs"][0]["name"] == "X"
        x = httpclient.InferInput("X", [4, 2], "FP32")
        x.set_data_from_numpy(X_TRAIN[:4].astype(np.float32))
        result = client.infer(
            "std-client",
            [x],
            outputs=[httpclient.InferRequestedOutput("label")],
            headers=AUTH,
        )
        assert result.as_numpy("label").tolist() == Y_TRAIN[:4].tolist()
    finally:
        client.close()
