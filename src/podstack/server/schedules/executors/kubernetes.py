"""Kubernetes executor: one Job per execution, submitted with the official ``kubernetes``
client (optional extra: ``pip install 'podstack[kubernetes]'``) and reconciled every tick.

- The Job name is deterministic (schedule + scheduled time), so a retried submission finds
  the Job it already created (HTTP 409) instead of starting a second one.
- ``activeDeadlineSeconds`` is the schedule's timeout, ``backoffLimit`` the executor's.
- GPUs: ``gpu_type`` maps, through the server's ``kubernetes_gpu_types`` setting, to an
  extended resource (``nvidia.com/gpu``) limit and a node selector (and optional tolerations).
- The run token travels in a Secret referenced by the pod, never in the Job spec.

Manifests are built as plain dicts and validated with the client's pydantic models, which
reject unknown fields, before anything is sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from podstack.schemas.schedules import ExecutionStatus
from podstack.server.schedules.executions import JobSpec
from podstack.server.schedules.executors.base import ExecutorError, Outcome

MANAGED_BY = "podstack"
CONTAINER = "train"
TTL_AFTER_FINISHED = 24 * 3600
LOG_TAIL_LINES = 5000

# (BatchV1Api, CoreV1Api); injectable so tests can use a mock (no cluster runs here).
ApiFactory = Callable[[], tuple[Any, Any]]


def job_name(schedule_name: str, schedule_id: str, scheduled_time: datetime) -> str:
    """A DNS-1123 label (<= 63 chars), the same for every attempt at one fire."""
    digest = hashlib.sha256(f"{schedule_id}|{scheduled_time.isoformat()}".encode()).hexdigest()
    slug = re.sub(r"[^a-z0-9-]+", "-", schedule_name.lower()).strip("-")[:40].strip("-")
    return f"podstack-{slug or 'job'}-{digest[:10]}"


def _labels(job: JobSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "podstack.io/schedule-id": job.schedule_id,
        "podstack.io/execution-id": job.execution_id,
    }


def secret_manifest(job: JobSpec, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-token", "namespace": namespace, "labels": _labels(job)},
        "type": "Opaque",
        "stringData": {"PODSTACK_API_TOKEN": job.api_token},
    }


def job_manifest(
    job: JobSpec, name: str, namespace: str, gpu_types: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    cfg = job.executor
    env_vars = {**(cfg.get("env") or {}), **job.env()}
    env_vars.pop("PODSTACK_API_TOKEN")
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(env_vars.items())]
    env.append(
        {
            "name": "PODSTACK_API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": f"{name}-token", "key": "PODSTACK_API_TOKEN"}},
        }
    )
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    for key in ("cpu", "memory"):
        if cfg.get(key):
            limits[key] = requests[key] = str(cfg[key])
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    if cfg.get("gpu_type"):
        gpu = gpu_types[cfg["gpu_type"]]
        limits[gpu.get("resource", "nvidia.com/gpu")] = str(cfg.get("gpu_count", 1))
        node_selector.update(gpu.get("node_selector") or {})
        tolerations.extend(gpu.get("tolerations") or [])
    node_selector.update(cfg.get("node_selector") or {})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": cfg["image"],
        "env": env,
    }
    if cfg.get("command"):
        container["command"] = list(cfg["command"])
    if limits:
        container["resources"] = {"limits": limits, "requests": requests or None}
        if not requests:
            del container["resources"]["requests"]
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if cfg.get("service_account"):
        pod_spec["serviceAccountName"] = cfg["service_account"]
    spec: dict[str, Any] = {
        "backoffLimit": int(cfg.get("backoff_limit", 0)),
        "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
        "template": {"metadata": {"labels": _labels(job)}, "spec": pod_spec},
    }
    if job.timeout_seconds:
        spec["activeDeadlineSeconds"] = int(job.timeout_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(job)},
        "spec": spec,
    }


def _models() -> Any:
    try:
        from kubernetes import client
    except ImportError:
        raise ExecutorError(
            "The kubernetes executor needs the 'kubernetes' package on the server: "
            "pip install 'podstack[kubernetes]'."
        ) from None
    return client


def validate_job(manifest: dict[str, Any]) -> Any:
    """The manifest as a ``V1Job``; unknown or mistyped fields raise (pydantic, strict)."""
    return _models().V1Job.model_validate(manifest)


def validate_secret(manifest: dict[str, Any]) -> Any:
    return _models().V1Secret.model_validate(manifest)


def default_api() -> tuple[Any, Any]:
    client = _models()
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise ExecutorError(f"No Kubernetes configuration found: {exc}") from None
    api = client.ApiClient()
    return client.BatchV1Api(api), client.CoreV1Api(api)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


class KubernetesExecutor:
    kind = "kubernetes"

    def __init__(
        self,
        *,
        namespace: str,
        gpu_types: dict[str, dict[str, Any]],
        api_factory: ApiFactory | None = None,
    ) -> None:
        self.namespace = namespace
        self.gpu_types = gpu_types
        self._api_factory = api_factory or default_api
        self._apis: tuple[Any, Any] | None = None

    def _api(self) -> tuple[Any, Any]:
        if self._apis is None:
            self._apis = self._api_factory()
        return self._apis

    def namespace_of(self, executor: dict[str, Any]) -> str:
        return executor.get("namespace") or self.namespace

    def start(self, job: JobSpec) -> str:
        name = job_name(job.schedule_name, job.schedule_id, job.scheduled_time)
        ns = self.namespace_of(job.executor)
        if job.executor.get("gpu_type") and job.executor["gpu_type"] not in self.gpu_types:
            raise ExecutorError(
                f"GPU type {job.executor['gpu_type']!r} is no longer configured on the server."
            )
        secret = validate_secret(secret_manifest(job, name, ns))
        body = validate_job(job_manifest(job, name, ns, self.gpu_types))
        batch, core = self._api()
        try:
            self._create_or_replace_secret(core, ns, secret)
            batch.create_namespaced_job(ns, body)
        except ExecutorError:
            raise
        except Exception as exc:
            if _status(exc) != 409:  # 409: created by an earlier attempt at this fire
                code = _status(exc)
                raise ExecutorError(
                    f"Creating Job {name} in {ns} failed: {getattr(exc, 'reason', exc)}",
                    retryable=code is None or code >= 500 or code == 429,
                ) from None
        return name

    @staticmethod
    def _create_or_replace_secret(core: Any, ns: str, secret: Any) -> None:
        try:
            core.create_namespaced_secret(ns, secret)
        except Exception as exc:
            if _status(exc) != 409:
                raise
            # A retry carries a fresh token (the previous one was revoked).
            core.replace_namespaced_secret(secret.metadata.name, ns, secret)

    def poll(self, name: str, executor: dict[str, Any]) -> Outcome | None:
        """Reconciles one Job: None while it runs, else its outcome (with the pod's log)."""
        ns = self.namespace_of(executor)
        batch, core = self._api()
        try:
            job = batch.read_namespaced_job_status(name, ns)
        except Exception as exc:
            if _status(exc) == 404:
                self._cleanup(core, name, ns)
                return Outcome(
                    status=ExecutionStatus.FAILED.value,
                    message=f"Job {name} disappeared from namespace {ns} "
                    "(deleted outside Podstack).",
                )
            raise ExecutorError(f"Reading Job {name} failed: {exc}", retryable=True) from None
        conditions = (
            {c.type: c for c in (job.status.conditions or []) if c.status == "True"}
            if job.status
            else {}
        )
        if "Complete" in conditions:
            status, message = ExecutionStatus.SUCCEEDED.value, f"Job {name} completed."
        elif "Failed" in conditions:
            c = conditions["Failed"]
            if c.reason == "DeadlineExceeded":
                status = ExecutionStatus.TIMED_OUT.value
                message = f"Job {name} exceeded its deadline and was stopped by Kubernetes."
            else:
                status = ExecutionStatus.FAILED.value
                message = f"Job {name} failed: {c.reason or ''} {c.message or ''}".strip()
        else:
            return None
        exit_code, log_text = self._pod_log(core, name, ns)
        self._cleanup(core, name, ns)
        return Outcome(status=status, exit_code=exit_code, message=message, log_text=log_text)

    def _pod_log(self, core: Any, name: str, ns: str) -> tuple[int | None, str | None]:
        try:
            pods = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items or []
        except Exception:
            return None, None
        if not pods:
            return None, None
        pod = max(pods, key=lambda p: str(p.metadata.creation_timestamp or ""))
        exit_code = None
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            term = cs.state.terminated if cs.state else None
            if cs.name == CONTAINER and term is not None:
                exit_code = term.exit_code
        try:
            text = core.read_namespaced_pod_log(
                pod.metadata.name, ns, container=CONTAINER, tail_lines=LOG_TAIL_LINES
            )
        except Exception:
            text = None
        return exit_code, text

    def cancel(self, name: str, executor: dict[str, Any]) -> None:
        ns = self.namespace_of(executor)
        batch, core = self._api()
        try:
            batch.delete_namespaced_job(name, ns, propagation_policy="Background")
        except Exception as exc:
            if _status(exc) != 404:
                raise ExecutorError(f"Deleting Job {name} failed: {exc}", retryable=True) from None
        self._cleanup(core, name, ns)

    @staticmethod
    def _cleanup(core: Any, name: str, ns: str) -> None:
        try:
            core.delete_namespaced_secret(f"{name}-token", ns)
        except Exception:
            pass  # already gone, or not ours to worry about: the token is revoked anyway
