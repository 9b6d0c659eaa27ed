"""SDK: deploy model versions, follow aliases, roll back, predict."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from podstack.client.base import BaseClient, seg
from podstack.errors import DeploymentFailed, ServiceUnavailable
from podstack.schemas import deployments as sch
from podstack.schemas.deployments import default_endpoint_name

# DeploymentFailed and default_endpoint_name live in podstack.errors and podstack.schemas;
# they stay importable from here, where they used to be defined.
__all__ = ["DeploymentFailed", "DeploymentsAPI", "default_endpoint_name"]


def _to_tensor(name: str, value: Any, datatype: str | None) -> dict[str, Any]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with every ML stack
        np = None  # type: ignore[assignment]
    if np is not None:
        if hasattr(value, "detach"):  # torch tensor
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if datatype is None:
            from podstack.serving.runtime import v2_datatype

            datatype = v2_datatype(arr.dtype)
        if datatype.startswith("FP"):
            arr = arr.astype({"FP16": "float16", "FP32": "float32", "FP64": "float64"}[datatype])
        elif datatype.startswith(("INT", "UINT")):
            arr = arr.astype(datatype.lower())
        data = arr.reshape(-1).tolist()
        return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}
    shape: list[int] = []
    probe = value
    while isinstance(probe, list | tuple):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, list | tuple):
            for x in v:
                walk(x)
        else:
            flat.append(v)

    walk(value)
    return {"name": name, "shape": shape, "datatype": datatype or "FP32", "data": flat}


class DeploymentsAPI(BaseClient):
    # ------------------------------------------------------------ deploy / update
    def deploy_model(
        self,
        model_name: str,
        version: int | None = None,
        endpoint_name: str | None = None,
        gpu_type: str | None = None,
        min_replicas: int = 1,
        max_replicas: int = 1,
        alias: str | None = None,
        target: str | None = None,
        *,
        production: bool = False,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> sch.Deployment:
        """Deploys ``version`` of ``model_name`` (or follows ``alias``: when it moves, the
        endpoint rolls to the new version) behind ``endpoint_name`` on ``target`` (the default
        target, usually ``local``). With ``wait`` it returns once the endpoint serves, or
        raises ``DeploymentFailed`` with the reason. ``deployment.endpoint_url`` is the Open
        Inference Protocol base URL; ``client.predict(endpoint_name, inputs)`` calls it.

        ``production=True`` marks the endpoint as serving production traffic: it serves only
        versions in Production or approved for it. Deploying another version raises
        :class:`podstack.errors.ApprovalPending` (``exc.request_id``; nothing was deployed) and
        the deployment is made once the request is approved."""
        body = {
            "model_name": model_name,
            "version": version,
            "alias": alias,
            "endpoint_name": endpoint_name or default_endpoint_name(model_name),
            "gpu_type": gpu_type,
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target": target,
        }
        if production:
            body["production"] = True
        dep = sch.Deployment.model_validate(self._request("POST", "/deployments", json=body))
        return self.wait_for_deployment(dep.endpoint_name, timeout) if wait else dep

    def update_deployment(
        self,
        endpoint_name: str,
        version: int | None = None,
        alias: str | None = None,
        gpu_type: str | None = None,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        *,
        production: bool | None = None,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> sch.Deployment:
        """Serves another version (pinned) or follows another alias, or changes scaling/GPU.
        The new server is ready before the old one stops; if it fails, the old one keeps
        serving and ``DeploymentFailed`` says why.

        ``production`` marks (True) or unmarks (False, admins only) a production endpoint. On
        a production endpoint, a version neither in Production nor approved for it raises
        :class:`podstack.errors.ApprovalPending` (nothing changed until it is approved)."""
        body: dict[str, Any] = {}
        if version is not None:
            body["version"] = version
        if alias is not None:
            body["alias"] = alias
        if gpu_type is not None:
            body["gpu_type"] = None if gpu_type.lower() == "cpu" else gpu_type
        if min_replicas is not None:
            body["min_replicas"] = min_replicas
        if max_replicas is not None:
            body["max_replicas"] = max_replicas
        if production is not None:
            body["production"] = production
        dep = sch.Deployment.model_validate(
            self._request("PATCH", f"/deployments/{seg(endpoint_name)}", json=body)
        )
        return self.wait_for_deployment(endpoint_name, timeout) if wait else dep

    def rollback_deployment(
        self, endpoint_name: str, *, wait: bool = True, timeout: float = 300.0
    ) -> sch.Deployment:
        """Back to the previously served version (pins the deployment to it)."""
        dep = sch.Deployment.model_validate(
            self._request("POST", f"/deployments/{seg(endpoint_name)}/rollback")
        )
        return self.wait_for_deployment(endpoint_name, timeout) if wait else dep

    def stop_deployment(self, endpoint_name: str) -> sch.Deployment:
        return sch.Deployment.model_validate(
            self._request("POST", f"/deployments/{seg(endpoint_name)}/stop")
        )

    def start_deployment(
        self, endpoint_name: str, *, wait: bool = True, timeout: float = 300.0
    ) -> sch.Deployment:
        dep = sch.Deployment.model_validate(
            self._request("POST", f"/deployments/{seg(endpoint_name)}/start")
        )
        return self.wait_for_deployment(endpoint_name, timeout) if wait else dep

    def delete_deployment(self, endpoint_name: str) -> None:
        self._request("DELETE", f"/deployments/{seg(endpoint_name)}")

    def get_deployment(self, endpoint_name: str) -> sch.Deployment:
        return sch.Deployment.model_validate(
            self._request("GET", f"/deployments/{seg(endpoint_name)}")
        )

    def list_deployments(
        self,
        model_name: str | None = None,
        version: int | None = None,
        status: str | None = None,
    ) -> list[sch.Deployment]:
        params = {"model_name": model_name, "version": version, "status": status, "limit": 1000}
        return [
            sch.Deployment.model_validate(d)
            for d in self._paginate("/deployments", "items", params)
        ]

    def wait_for_deployment(self, endpoint_name: str, timeout: float = 300.0) -> sch.Deployment:
        """Polls until the deployment serves its target version, or failed/stopped."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            dep = self.get_deployment(endpoint_name)
            if sch.is_settled(dep):
                # Every action clears a failed rollout's record, so one seen once settled is
                # this action's (what is wanted went back to what still serves).
                if dep.status == "failed" or (
                    dep.rollout is not None and dep.rollout.status == "failed"
                ):
                    reason = (dep.rollout.reason if dep.rollout else None) or dep.status_reason
                    raise DeploymentFailed(
                        dep.status_reason or f"Deployment {endpoint_name!r} failed: {reason}",
                        {
                            "endpoint_name": endpoint_name,
                            "reason": reason,
                            "still_serving": dep.version,
                            "status": dep.status,
                        },
                    )
                return dep
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"Deployment {endpoint_name!r} is still {dep.status} after {timeout:.0f}s.",
                    {"endpoint_name": endpoint_name, "status": dep.status},
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    # ------------------------------------------------------------ inference
    def predict(self, endpoint_name: str, inputs: Any) -> sch.InferResponse:
        """Runs inference on a deployment through the Open Inference Protocol.

        ``inputs``: an array-like (numpy array, tensor, nested lists) for a single-input model,
        a mapping of input name to array-like, or a complete V2 request
        (``{"inputs": [{"name", "shape", "datatype", "data"}]}``). Datatypes follow the
        model's signature. ``result.as_dict()`` gives the outputs as arrays by name.
        """
        if isinstance(inputs, Mapping) and "inputs" in inputs:
            body = dict(inputs)
        else:
            sig = self.get_deployment(endpoint_name).signature or {}
            specs = {t["name"]: t for t in sig.get("inputs", [])}
            if isinstance(inputs, Mapping):
                named = dict(inputs)
            else:
                first = next(iter(specs), "input")
                named = {first: inputs}
            body = {
                "inputs": [
                    _to_tensor(n, v, (specs.get(n) or {}).get("datatype")) for n, v in named.items()
                ]
            }
        return sch.InferResponse.model_validate(
            self._request("POST", f"/deployments/{seg(endpoint_name)}/predict", json=body)
        )

    # ------------------------------------------------------------ targets (admin)
    def list_deployment_targets(self) -> list[sch.Target]:
        return [sch.Target.model_validate(t) for t in self._request("GET", "/deployment-targets")]

    def set_deployment_target(
        self,
        name: str,
        kind: str,
        config: Mapping[str, Any] | None = None,
        is_default: bool = False,
    ) -> sch.Target:
        """Admins: create or replace a target (``local`` or ``kubernetes``)."""
        body = {"kind": kind, "config": dict(config or {}), "is_default": is_default}
        return sch.Target.model_validate(
            self._request("PUT", f"/deployment-targets/{seg(name)}", json=body)
        )

    def delete_deployment_target(self, name: str) -> None:
        self._request("DELETE", f"/deployment-targets/{seg(name)}")
