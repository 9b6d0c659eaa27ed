"""The kubernetes target. No cluster runs here, so: the InferenceService is validated against
a subset of KServe's published CRD schema (see data/) and through the Kubernetes client's own
models, and the API calls go to a recording fake of ``CustomObjectsApi`` (a mock, because a
real API server cannot run in this environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import models as k8s_models
from kubernetes.client.exceptions import ApiException

from podstack import MLOpsClient
from podstack.errors import ValidationFailed
from podstack.server.deployments import kubernetes as k8s

SCHEMA = yaml.safe_load(
    (Path(__file__).parent / "data" / "kserve_inferenceservice_v1beta1_subset.yaml").read_text()
)


class FakeCustomObjectsApi:
    """Records calls; answers like an API server whose KServe controller made it Ready."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):  # type: ignore[no-untyped-def]
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        key = (namespace, body["metadata"]["name"])
        self.calls.append(("create", key[1]))
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.objects[key] = self._ready(body)
        return self.objects[key]

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):  # type: ignore[no-untyped-def]
        self.calls.append(("patch", name))
        self.objects[(namespace, name)] = self._ready(body)
        return self.objects[(namespace, name)]

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):  # type: ignore[no-untyped-def]
        self.calls.append(("get", name))
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        return self.objects[(namespace, name)]

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):  # type: ignore[no-untyped-def]
        self.calls.append(("delete", name))
        self.objects.pop((namespace, name), None)

    @staticmethod
    def _ready(body: dict[str, Any]) -> dict[str, Any]:
        name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
        return {
            **body,
            "status": {
                "url": f"http://{name}.{ns}.example.com",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }


@pytest.fixture
def fake_k8s(monkeypatch: pytest.MonkeyPatch) -> FakeCustomObjectsApi:
    fake = FakeCustomObjectsApi()
    monkeypatch.setattr(k8s, "api_factory", lambda config: fake)
    return fake


def assert_valid_inference_service(isvc: dict[str, Any]) -> None:
    jsonschema.validate(isvc, SCHEMA)

    def declared(obj: Any, schema: dict[str, Any], where: str) -> None:
        if isinstance(obj, dict) and "properties" in schema:
            for k, v in obj.items():
                assert k in schema["properties"], f"{where}.{k} is not in the CRD (pruned)"
                declared(v, schema["properties"][k], f"{where}.{k}")
        elif isinstance(obj, list) and "items" in schema:
            for i, v in enumerate(obj):
                declared(v, schema["items"], f"{where}[{i}]")

    declared(isvc, SCHEMA, "")
    # The pod-level pieces through the Kubernetes client's own (pydantic, extra=forbid)
    # models: unknown or mistyped fields fail, and the round trip must be lossless.
    predictor = isvc["spec"]["predictor"]
    pieces: list[tuple[type[Any], Any]] = [
        (k8s_models.V1ObjectMeta, isvc["metadata"]),
        (k8s_models.V1ResourceRequirements, predictor["model"]["resources"]),
        *[(k8s_models.V1Toleration, t) for t in predictor.get("tolerations", [])],
    ]
    for model, value in pieces:
        parsed = model.model_validate(value)
        assert parsed.model_dump(by_alias=True, exclude_none=True) == value, model.__name__


def test_seed_deploy_with_t4_gives_valid_inference_service(
    sdk: MLOpsClient, register: Any, sk_model: Any, fake_k8s: FakeCustomObjectsApi
) -> None:
    sdk.set_deployment_target(
        "gpu-cluster",
        "kubernetes",
        {"namespace": "models", "storage_uri_base": "s3://models/podstack"},
    )
    v = register("sentiment-classifier", sk_model)
    # The seed's call, on the kubernetes target.
    deployment = sdk.deploy_model(
        model_name="sentiment-classifier",
        version=v.version,
        endpoint_name="sentiment-api",
        gpu_type="T4",
        min_replicas=1,
        max_replicas=3,
        target="gpu-cluster",
    )
    assert deployment.status == "ready" and deployment.target_kind == "kubernetes"
    assert deployment.endpoint_url == "http://sentiment-api.models.example.com"
    assert deployment.inference_url == (
        "http://sentiment-api.models.example.com/v2/models/sentiment-api/infer"
    )
    isvc = fake_k8s.objects[("models", "sentiment-api")]
    isvc = {k: v for k, v in isvc.items() if k != "status"}
    assert_valid_inference_service(isvc)
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    model = predictor["model"]
    assert model["protocolVersion"] == "v2"
    assert model["modelFormat"] == {"name": "onnx"}
    assert model["storageUri"] == f"s3://models/podstack/sentiment-classifier/{v.version}"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"

    # A new version is a patch of the same InferenceService (KServe rolls it out).
    v2 = register("sentiment-classifier", sk_model)
    updated = sdk.update_deployment("sentiment-api", version=v2.version, max_replicas=5)
    assert updated.version == v2.version
    assert ("patch", "sentiment-api") in fake_k8s.calls
    assert fake_k8s.objects[("models", "sentiment-api")]["spec"]["predictor"]["maxReplicas"] == 5
    sdk.delete_deployment("sentiment-api")
    assert ("delete", "sentiment-api") in fake_k8s.calls
    assert fake_k8s.objects == {}


def test_seed_t4_on_local_target_is_a_clear_422(
    sdk: MLOpsClient, register: Any, sk_model: Any
) -> None:
    v = register("sentiment-classifier", sk_model)
    with pytest.raises(ValidationFailed) as exc:
        sdk.deploy_model(
            model_name="sentiment-classifier",
            version=v.version,
            endpoint_name="sentiment-api",
            gpu_type="T4",
            min_replicas=1,
            max_replicas=3,
        )
    assert "'T4'" in exc.value.message and "It offers: cpu" in exc.value.message
    assert exc.value.details["offered"] == ["cpu"]
    assert sdk.list_deployments() == []


def test_gpu_map_is_configurable_and_unknown_types_name_the_offered_ones(
    sdk: MLOpsClient, register: Any, sk_model: Any, fake_k8s: FakeCustomObjectsApi
) -> None:
    sdk.set_deployment_target(
        "k8s",
        "kubernetes",
        {"gpu_types": {"L40S": "nvidia.com/gpu.product=NVIDIA-L40S"}},
        is_default=True,
    )
    targets = {t.name: t for t in sdk.list_deployment_targets()}
    assert targets["k8s"].gpu_types == ["cpu", "L40S"] and targets["k8s"].is_default
    assert targets["local"].builtin
    v = register("vision", sk_model)
    with pytest.raises(ValidationFailed) as exc:
        sdk.deploy_model("vision", version=v.version, endpoint_name="vision", gpu_type="T4")
    assert exc.value.details["offered"] == ["cpu", "L40S"]
    dep = sdk.deploy_model("vision", version=v.version, endpoint_name="vision", gpu_type="l40s")
    assert dep.gpu_type == "L40S" and dep.target == "k8s"
    isvc = fake_k8s.objects[("default", "vision")]
    assert isvc["spec"]["predictor"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    assert_valid_inference_service({k: v for k, v in isvc.items() if k != "status"})


def test_default_gpu_map_covers_common_cards() -> None:
    assert k8s.DEFAULT_GPU_TYPES["T4"]["node_selector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert set(k8s.DEFAULT_GPU_PRODUCTS) >= {"T4", "A100", "L4", "H100"}
