"""The ``kubernetes`` target: a KServe ``InferenceService`` (serving.kserve.io/v1beta1) per
deployment, speaking protocol v2, applied and watched through the Kubernetes Python client.

Admin configuration (``PUT /api/v1/deployment-targets/<name>``, kind ``kubernetes``)::

    {
      "namespace": "models",
      "storage_uri_base": "s3://models/podstack",   # optional: see storage_uri()
      "gpu_types": {"T4": {"node_selector": {"nvidia.com/gpu.product": "Tesla-T4"}}},
      "kubeconfig": "/etc/podstack/kubeconfig",      # else in-cluster, else ~/.kube/config
      "context": null,
      "url_template": "http://{name}.{namespace}.example.com",
      "resources": {"cpu": "1", "memory": "2Gi"},
      "ready_timeout_seconds": 600,
      "trusted_formats": false
    }

``gpu_types`` maps the ``gpu_type`` a user asks for to a node selector and tolerations;
unset keys fall back to ``DEFAULT_GPU_TYPES`` (labels of NVIDIA GPU feature discovery).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from podstack.errors import ValidationFailed
from podstack.server.deployments.targets import KUBERNETES, Probe, RunSpec, StartFailed, Target
from podstack.serving import formats as fmt

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
_GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# gpu_type -> nvidia.com/gpu.product value as published by NVIDIA GPU feature discovery.
DEFAULT_GPU_PRODUCTS = {
    "T4": "Tesla-T4",
    "V100": "Tesla-V100-SXM2-16GB",
    "A10G": "NVIDIA-A10G",
    "L4": "NVIDIA-L4",
    "A100": "NVIDIA-A100-SXM4-40GB",
    "H100": "NVIDIA-H100-80GB-HBM3",
}
DEFAULT_GPU_TYPES = {
    name: {"node_selector": {GPU_PRODUCT_LABEL: product}, "tolerations": [_GPU_TOLERATION]}
    for name, product in DEFAULT_GPU_PRODUCTS.items()
}
# KServe model format names (ClusterServingRuntime supportedModelFormats).
KSERVE_FORMATS = {fmt.ONNX: "onnx", fmt.TORCHSCRIPT: "pytorch", fmt.SKLEARN: "sklearn"}

ApiFactory = Callable[[dict[str, Any]], Any]


def default_api_factory(config: dict[str, Any]) -> Any:
    """A ``CustomObjectsApi`` from the configured kubeconfig, in-cluster config, or default."""
    from kubernetes import client
    from kubernetes import config as kconfig

    if config.get("kubeconfig"):
        api_client = kconfig.new_client_from_config(
            config_file=config["kubeconfig"], context=config.get("context")
        )
        return client.CustomObjectsApi(api_client)
    try:
        kconfig.load_incluster_config()
    except kconfig.ConfigException:
        kconfig.load_kube_config(context=config.get("context"))
    return client.CustomObjectsApi()


# Tests replace this with a recording fake (no cluster runs in CI).
api_factory: ApiFactory = default_api_factory


def _gpu_entry(value: Any) -> dict[str, Any]:
    """Accepts ``{"node_selector": {...}, "tolerations": [...]}`` or the short
    ``"nvidia.com/gpu.product=Tesla-T4"`` / ``{"nvidia.com/gpu.product": "Tesla-T4"}``."""
    if isinstance(value, str):
        key, _, val = value.partition("=")
        if not val:
            key, val = GPU_PRODUCT_LABEL, key
        return {"node_selector": {key.strip(): val.strip()}, "tolerations": [_GPU_TOLERATION]}
    if isinstance(value, dict) and "node_selector" not in value and "tolerations" not in value:
        return {"node_selector": dict(value), "tolerations": [_GPU_TOLERATION]}
    if isinstance(value, dict):
        return {
            "node_selector": dict(value.get("node_selector") or {}),
            "tolerations": list(value.get("tolerations", [_GPU_TOLERATION])),
        }
    raise ValidationFailed(f"Invalid gpu_types entry {value!r}.")


class KubernetesTarget(Target):
    kind = KUBERNETES
    autoscales = True  # KServe scales the predictor between minReplicas and maxReplicas

    @property
    def namespace(self) -> str:
        return str(self.config.get("namespace") or "default")

    def gpu_map(self) -> dict[str, dict[str, Any]]:
        configured = self.config.get("gpu_types")
        if configured is None:
            return dict(DEFAULT_GPU_TYPES)
        return {str(k): _gpu_entry(v) for k, v in dict(configured).items()}

    def gpu_types(self) -> list[str]:
        return ["cpu", *self.gpu_map()]

    def _publishes(self) -> bool:
        """With an object store and no ``storage_uri_base`` of its own, the target points
        KServe at the version's files in Podstack's bucket, copied there at deploy time."""
        return not self.config.get("storage_uri_base") and hasattr(self.store, "publish_version")

    def storage_uri(self, spec: RunSpec) -> str:
        if self._publishes():
            return str(self.store.version_uri(spec.model_name, spec.version))  # type: ignore[union-attr]
        base = str(self.config.get("storage_uri_base") or "pvc://podstack-models").rstrip("/")
        return f"{base}/{spec.model_name}/{spec.version}"

    def publish(self, spec: RunSpec) -> None:
        """Lays the version's files out under ``storageUri`` (server-side copies in the
        bucket) before KServe's storage initializer looks for them."""
        if not self._publishes():
            return
        try:
            self.store.publish_version(spec.model_name, spec.version, spec.files)  # type: ignore[union-attr]
        except Exception as exc:  # the deployment fails with the store's reason
            raise StartFailed(
                f"Could not copy the version's files to {self.storage_uri(spec)}: {exc}"
            ) from exc

    def manifest(self, spec: RunSpec) -> dict[str, Any]:
        """The InferenceService for ``spec`` as a plain dict (what the API receives)."""
        resources = dict(self.config.get("resources") or {"cpu": "1", "memory": "2Gi"})
        limits: dict[str, str] = {k: str(v) for k, v in resources.items()}
        requests = dict(limits)
        predictor: dict[str, Any] = {
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "model": {
                "modelFormat": {"name": KSERVE_FORMATS[spec.format]},
                "protocolVersion": "v2",
                "storageUri": self.storage_uri(spec),
                "resources": {"limits": limits, "requests": requests},
            },
        }
        if spec.gpu_type:
            entry = self.gpu_map()[spec.gpu_type]
            limits[GPU_RESOURCE] = "1"
            requests[GPU_RESOURCE] = "1"
            if entry["node_selector"]:
                predictor["nodeSelector"] = dict(entry["node_selector"])
            if entry["tolerations"]:
                predictor["tolerations"] = [dict(t) for t in entry["tolerations"]]
        if self.config.get("service_account"):
            predictor["serviceAccountName"] = str(self.config["service_account"])
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {
                "name": spec.endpoint,
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": "podstack",
                    "podstack.io/model-version": str(spec.version),
                },
                "annotations": {
                    "podstack.io/deployment-id": spec.deployment_id,
                    "podstack.io/model-name": spec.model_name,
                },
            },
            "spec": {"predictor": predictor},
        }

    def api(self) -> Any:
        return api_factory(self.config)

    # ---------------------------------------------------------------- lifecycle

    def start(self, spec: RunSpec) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        self.publish(spec)
        body = self.manifest(spec)
        api = self.api()
        try:
            try:
                api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # Exists: a new version/replica count is a patch; KServe keeps the previous
                # revision serving until the new one is ready.
                api.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, spec.endpoint, body
                )
        except ApiException as exc:
            raise StartFailed(f"Kubernetes API refused the InferenceService: {exc.reason}")
        runtime = {
            "kind": KUBERNETES,
            "namespace": self.namespace,
            "name": spec.endpoint,
            "version": spec.version,
            "version_id": spec.version_id,
            "key": spec.key(),
            "started_at": time.time(),
        }
        deadline = time.monotonic() + float(self.config.get("ready_timeout_seconds", 600))
        while True:
            p = self.probe(runtime, api=api, expect_version=spec.version)
            runtime.update(p.updates)
            if p.ok:
                return runtime
            if p.updates.get("failed"):
                raise StartFailed(p.message)
            if time.monotonic() > deadline:
                raise StartFailed(f"InferenceService not ready in time: {p.message}")
            time.sleep(float(self.config.get("poll_seconds", 2)))

    def stop(self, runtime: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api().delete_namespaced_custom_object(
                GROUP, VERSION, runtime.get("namespace", self.namespace), PLURAL, runtime["name"]
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def alive(self, runtime: dict[str, Any]) -> bool:
        return True  # the cluster keeps it; probe() tells whether it is ready

    def probe(
        self,
        runtime: dict[str, Any],
        *,
        api: Any = None,
        expect_version: int | None = None,
    ) -> Probe:
        from kubernetes.client.exceptions import ApiException

        t0 = time.perf_counter()
        try:
            obj = (api or self.api()).get_namespaced_custom_object(
                GROUP, VERSION, runtime.get("namespace", self.namespace), PLURAL, runtime["name"]
            )
        except ApiException as exc:
            return Probe(False, None, f"Kubernetes API: {exc.status} {exc.reason}")
        ms = round((time.perf_counter() - t0) * 1000, 2)
        status = obj.get("status") or {}
        updates: dict[str, Any] = {}
        if status.get("url"):
            updates["url"] = status["url"]
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if expect_version is not None and labels.get("podstack.io/model-version") not in (
            None,
            str(expect_version),
        ):
            return Probe(False, ms, "waiting for the new revision", updates)
        # The API server changes spec and labels at once on a patch, but the status (Ready
        # included) is the controller's account of an older generation until it has
        # reconciled the new one: the previous revision's Ready is no answer for this one.
        generation, observed = meta.get("generation"), status.get("observedGeneration")
        if (
            expect_version is not None
            and isinstance(generation, int)
            and isinstance(observed, int)
            and observed < generation
        ):
            return Probe(False, ms, "waiting for the new revision", updates)
        if ready and ready.get("status") == "True":
            return Probe(True, ms, "Ready", updates)
        message = (ready or {}).get("message") or (ready or {}).get("reason") or "not ready yet"
        if (
            ready
            and ready.get("status") == "False"
            and ready.get("reason")
            in (
                "RevisionFailed",
                "RevisionMissing",
                "PredictorConfigurationReady",
            )
        ):
            updates["failed"] = True
        return Probe(False, ms, str(message), updates)

    def base_url(self, runtime: dict[str, Any]) -> str | None:
        return self.public_url(runtime.get("name", ""), runtime)

    def public_url(self, endpoint: str, runtime: dict[str, Any] | None) -> str | None:
        if runtime and runtime.get("url"):
            return str(runtime["url"])
        template = self.config.get("url_template")
        if template:
            return str(template).format(name=endpoint, namespace=self.namespace)
        return None
