"""The kubernetes target. No cluster runs here, so the API calls go to a fake API server with
a fake KServe controller (``FakeKServe``), built to fail the way the real ones do:

- its ``CustomObjectsApi`` is ``create_autospec(CustomObjectsApi, instance=True)``, so every
  call is bound to the real client's signature (a misspelt argument is a TypeError);
- every InferenceService it receives is validated twice: against KServe's published CRD schema,
  the part of it covering the fields we write with its ``required`` lists and patterns
  (``data/kserve_inferenceservice_v1beta1_subset.yaml``), and against KServe's whole published
  API model, every object and field of it, from the pinned ``kserve`` wheel
  (``kserve_api.py``); a violation of either is a 422 as from the API server, and fields the
  schema does not declare, which the API server would prune silently, are recorded and
  asserted absent;
- it behaves like an API server with a ``status`` subresource (status in a body is ignored;
  ``metadata.generation`` moves on each spec change) and a controller that takes its time: each
  create or patch plays a status plan (``stale`` = the controller has not yet observed the new
  generation and still reports the old one's status, ``unknown`` = reconciling, ``ready``, or a
  ``failed`` condition), one step per GET.

The pod-level pieces are also checked through the Kubernetes client's own models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import jsonschema
import pytest
import yaml
from kubernetes.client import CustomObjectsApi
from kubernetes.client import models as k8s_models
from kubernetes.client.exceptions import ApiException

from podstack import MLOpsClient
from podstack.errors import ValidationFailed
from podstack.server.deployments import kubernetes as k8s
from podstack.server.deployments.targets import RunSpec, StartFailed
from tests.server.deployments import kserve_api

SCHEMA: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "kserve_inferenceservice_v1beta1_subset.yaml").read_text()
)
# Built once: jsonschema.validate() would check and compile the schema on every call.
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
# Status plans: what successive GETs show after a create or patch (the last step stays).
READY_AT_ONCE = ["ready"]
REVISION_FAILED = ("failed", "RevisionFailed", 'Revision "m-predictor-00002" failed: ErrImagePull')


def undeclared(obj: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Paths of ``obj`` that ``schema`` does not declare: what a structural-schema API server
    prunes without a word."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(obj, dict):
        if "properties" in schema:
            for k, v in obj.items():
                if k in schema["properties"]:
                    out += undeclared(v, schema["properties"][k], f"{where}.{k}")
                else:
                    out.append(f"{where}.{k}")
        elif isinstance(schema.get("additionalProperties"), dict):
            for k, v in obj.items():
                out += undeclared(v, schema["additionalProperties"], f"{where}.{k}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(obj):
            out += undeclared(v, schema["items"], f"{where}[{i}]")
    return out


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: what the client sends a dict body as."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


class FakeKServe:
    """An API server holding InferenceServices plus a KServe controller following a plan."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.pruned: list[str] = []
        self.rejected: list[str] = []
        # name -> plan for the next create/patch of that object (default: ready at once).
        self.next_plan: dict[str, list[Any]] = {}
        self._plans: dict[tuple[str, str], list[Any]] = {}
        self._last_status: dict[tuple[str, str], dict[str, Any]] = {}
        api = create_autospec(CustomObjectsApi, instance=True)
        api.create_namespaced_custom_object.side_effect = self._create
        api.patch_namespaced_custom_object.side_effect = self._patch
        api.get_namespaced_custom_object.side_effect = self._get
        api.delete_namespaced_custom_object.side_effect = self._delete
        self.api = api

    # ------------------------------------------------------------ the API server

    def _admit(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body.pop("status", None)  # a status subresource: the main resource ignores it
        try:
            VALIDATOR.validate(body)
        except jsonschema.ValidationError as exc:
            self.rejected.append(exc.message)
            raise ApiException(status=422, reason=f"Invalid: {exc.message}") from None
        wrong = kserve_api.type_errors(body)
        if wrong:
            self.rejected += wrong
            raise ApiException(status=422, reason=f"Invalid: {'; '.join(wrong)}")
        k8s_models.V1ObjectMeta.model_validate(body["metadata"])
        gone = undeclared(body, SCHEMA)
        self.pruned += gone
        for path in gone:  # prune, as the API server does
            parts = path.strip(".").replace("[", ".[").split(".")
            node: Any = body
            for part in parts[:-1]:
                node = node[int(part[1:-1])] if part.startswith("[") else node[part]
            node.pop(parts[-1], None)
        return body

    def _create(self, group, version, namespace, plural, body, **kwargs):  # type: ignore[no-untyped-def]
        assert (group, version, plural) == KSERVE
        name = body["metadata"]["name"]
        self.calls.append(("create", name))
        key = (namespace, name)
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        obj = self._admit(body)
        obj["metadata"] = {**obj["metadata"], "namespace": namespace, "generation": 1}
        self.objects[key] = obj
        self._plans[key] = list(self.next_plan.pop(name, READY_AT_ONCE))
        self._last_status[key] = {}
        return copy.deepcopy(obj)

    def _patch(self, group, version, namespace, plural, name, body, **kwargs):  # type: ignore[no-untyped-def]
        assert (group, version, plural) == KSERVE
        self.calls.append(("patch", name))
        key = (namespace, name)
        if key not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        old = self.objects[key]
        merged = self._admit(_merge_patch(old, body))
        gen = old["metadata"]["generation"] + (merged.get("spec") != old.get("spec"))
        merged["metadata"] = {**merged["metadata"], "generation": gen}
        self.objects[key] = merged
        self._plans[key] = list(self.next_plan.pop(name, ["stale", "ready"]))
        return copy.deepcopy(merged)

    def _get(self, group, version, namespace, plural, name, **kwargs):  # type: ignore[no-untyped-def]
        assert (group, version, plural) == KSERVE
        self.calls.append(("get", name))
        key = (namespace, name)
        if key not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        return {**copy.deepcopy(self.objects[key]), "status": self._controller(key)}

    def _delete(self, group, version, namespace, plural, name, **kwargs):  # type: ignore[no-untyped-def]
        assert (group, version, plural) == KSERVE
        self.calls.append(("delete", name))
        if self.objects.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="NotFound")
        return {"kind": "Status", "status": "Success"}

    # ------------------------------------------------------------ the KServe controller

    def _controller(self, key: tuple[str, str]) -> dict[str, Any]:
        plan = self._plans[key]
        step = plan.pop(0) if len(plan) > 1 else plan[0]
        obj = self.objects[key]
        gen = obj["metadata"]["generation"]
        if step == "stale":  # the previous generation's account, Ready and all
            return copy.deepcopy(self._last_status[key])
        ns, name = key
        status: dict[str, Any] = {"observedGeneration": gen}
        if step == "ready":
            status["url"] = f"http://{name}.{ns}.example.com"
            status["conditions"] = [{"type": "Ready", "status": "True"}]
        elif step == "unknown":
            status["conditions"] = [
                {"type": "Ready", "status": "Unknown", "message": "Revision is not ready yet"}
            ]
        else:
            _, reason, message = step
            status["conditions"] = [
                {"type": "Ready", "status": "False", "reason": reason, "message": message}
            ]
        VALIDATOR.validate({**obj, "status": status})
        self._last_status[key] = status
        return copy.deepcopy(status)


@pytest.fixture
def fake_k8s(monkeypatch: pytest.MonkeyPatch) -> FakeKServe:
    fake = FakeKServe()
    monkeypatch.setattr(k8s, "api_factory", lambda config: fake.api)
    return fake


def assert_valid_inference_service(isvc: dict[str, Any]) -> None:
    """Against the published CRD schema, with nothing the API server would prune, and the
    pod-level pieces through the Kubernetes client's own (pydantic, extra=forbid) models."""
    VALIDATOR.validate(isvc)
    assert undeclared(isvc, SCHEMA) == [], "fields the API server would prune"
    assert kserve_api.problems(isvc) == [], "against KServe's whole published API model"
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
    sdk: MLOpsClient, register: Any, sk_model: Any, fake_k8s: FakeKServe
) -> None:
    sdk.set_deployment_target(
        "gpu-cluster",
        "kubernetes",
        {"namespace": "models", "storage_uri_base": "s3://models/podstack", "poll_seconds": 0.02},
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
    sdk: MLOpsClient, register: Any, sk_model: Any, fake_k8s: FakeKServe
) -> None:
    sdk.set_deployment_target(
        "k8s",
        "kubernetes",
        {"gpu_types": {"L40S": "nvidia.com/gpu.product=NVIDIA-L40S"}, "poll_seconds": 0.02},
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


# ---------------------------------------------------------------- the paths a slow or failing
# controller takes, on the target itself (start() is what the deployment manager calls)


def _spec(version: int = 1, endpoint: str = "m") -> RunSpec:
    return RunSpec(
        deployment_id="dep-1",
        endpoint=endpoint,
        model_name="m",
        version=version,
        version_id=version,
        format="onnx",
        files=[],
        min_replicas=1,
        max_replicas=2,
        gpu_type=None,
        trusted=False,
    )


def _target(settings: Any, **config: Any) -> k8s.KubernetesTarget:
    return k8s.KubernetesTarget(
        "k8s", {"namespace": "models", "poll_seconds": 0.01, **config}, settings, None
    )  # type: ignore[arg-type]  # the kubernetes target never touches the blob store


def test_start_polls_until_the_controller_reports_ready(
    settings: Any, fake_k8s: FakeKServe
) -> None:
    fake_k8s.next_plan["m"] = ["unknown", "unknown", "unknown", "ready"]
    runtime = _target(settings).start(_spec())
    assert [c for c in fake_k8s.calls if c[0] == "get"] == [("get", "m")] * 4
    assert runtime["url"] == "http://m.models.example.com" and runtime["version"] == 1
    assert fake_k8s.pruned == [] and fake_k8s.rejected == []


def test_revision_failed_fails_the_start_with_kserve_message(
    settings: Any, fake_k8s: FakeKServe
) -> None:
    fake_k8s.next_plan["m"] = ["unknown", REVISION_FAILED]
    with pytest.raises(StartFailed) as exc:
        _target(settings).start(_spec())
    assert "ErrImagePull" in exc.value.reason
    # It stopped at the failure rather than polling on to the timeout.
    assert [c for c in fake_k8s.calls if c[0] == "get"] == [("get", "m")] * 2


def test_never_ready_times_out(settings: Any, fake_k8s: FakeKServe) -> None:
    fake_k8s.next_plan["m"] = ["unknown"]
    with pytest.raises(StartFailed) as exc:
        _target(settings, ready_timeout_seconds=0.5).start(_spec())
    assert "not ready in time" in exc.value.reason
    assert "Revision is not ready yet" in exc.value.reason
    assert sum(1 for c in fake_k8s.calls if c[0] == "get") >= 2


def test_a_patch_waits_for_the_new_revision_not_the_old_ready(
    settings: Any, fake_k8s: FakeKServe
) -> None:
    target = _target(settings)
    target.start(_spec(version=1))
    # Version 2: the API server takes the patch at once (new labels, generation 2) but the
    # controller still reports generation 1's Ready for two GETs, then reconciles.
    fake_k8s.next_plan["m"] = ["stale", "stale", "unknown", "ready"]
    fake_k8s.calls.clear()
    runtime = target.start(_spec(version=2))
    assert fake_k8s.calls[:2] == [("create", "m"), ("patch", "m")]
    assert [c for c in fake_k8s.calls if c[0] == "get"] == [("get", "m")] * 4
    assert runtime["version"] == 2
    obj = fake_k8s.objects[("models", "m")]
    assert obj["metadata"]["generation"] == 2
    assert obj["metadata"]["labels"]["podstack.io/model-version"] == "2"


def test_a_stale_revision_failure_does_not_fail_the_new_rollout(
    settings: Any, fake_k8s: FakeKServe
) -> None:
    target = _target(settings)
    fake_k8s.next_plan["m"] = ["unknown", REVISION_FAILED]
    with pytest.raises(StartFailed):
        target.start(_spec(version=1))
    # The fix (version 2) rolls out; until the controller sees it, the old failure shows.
    fake_k8s.next_plan["m"] = ["stale", "stale", "ready"]
    assert target.start(_spec(version=2))["version"] == 2


def test_probe_reports_api_errors_and_a_missing_service(
    settings: Any, fake_k8s: FakeKServe
) -> None:
    probe = _target(settings).probe({"name": "gone", "namespace": "models"})
    assert not probe.ok and "404" in probe.message


def test_the_fake_refuses_what_the_api_server_refuses(fake_k8s: FakeKServe) -> None:
    """The fake is only worth its passes if it fails like the real thing."""
    api = fake_k8s.api
    with pytest.raises(TypeError):  # a misspelt argument: the real signature refuses it
        api.create_namespaced_custom_object(*KSERVE[:2], "models", KSERVE[2], body_typo={})
    good = k8s.KubernetesTarget("k", {"namespace": "models"}, None, None).manifest(_spec())  # type: ignore[arg-type]
    bad = copy.deepcopy(good)
    bad["spec"]["predictor"]["minReplicas"] = "one"  # wrong type: the CRD says integer
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object(KSERVE[0], KSERVE[1], "models", KSERVE[2], bad)
    assert exc.value.status == 422
    bad = copy.deepcopy(good)
    del bad["spec"]["predictor"]["model"]["modelFormat"]["name"]  # required by the CRD
    with pytest.raises(ApiException):
        api.create_namespaced_custom_object(KSERVE[0], KSERVE[1], "models", KSERVE[2], bad)
    # A field our subset leaves out but KServe's full model declares, with the wrong type.
    bad = copy.deepcopy(good)
    bad["spec"]["predictor"]["model"]["runtimeVersion"] = 2  # the published model: a string
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object(KSERVE[0], KSERVE[1], "models", KSERVE[2], bad)
    assert exc.value.status == 422 and "runtimeVersion: expected str" in exc.value.reason
    # An undeclared field is pruned, silently as on a real cluster, and recorded here.
    typo = copy.deepcopy(good)
    typo["spec"]["predictor"]["model"]["storageURI"] = "s3://x"
    api.create_namespaced_custom_object(KSERVE[0], KSERVE[1], "models", KSERVE[2], typo)
    assert fake_k8s.pruned == [".spec.predictor.model.storageURI"]
    assert "storageURI" not in fake_k8s.objects[("models", "m")]["spec"]["predictor"]["model"]


def test_every_manifest_variant_matches_the_crd(settings: Any) -> None:
    """GPU, service account, resources and every format, against the published schema."""
    target = _target(
        settings,
        service_account="models-sa",
        resources={"cpu": "2", "memory": "4Gi"},
        gpu_types={"T4": "nvidia.com/gpu.product=Tesla-T4"},
    )
    for fmt_name in k8s.KSERVE_FORMATS:
        for gpu in (None, "T4"):
            spec = _spec()
            spec = RunSpec(**{**spec.__dict__, "format": fmt_name, "gpu_type": gpu})
            assert_valid_inference_service(target.manifest(spec))
