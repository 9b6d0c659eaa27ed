"""The ``ray`` target: each deployment is a Ray Serve application (named after its endpoint,
route ``/<endpoint>``) running ``podstack.serving.ray_serve`` -- the same Open Inference
Protocol app as the local model server -- deployed through Ray's own Serve client
(``ServeSubmissionClient``, the dashboard's Serve REST API).

Admin configuration (``PUT /api/v1/deployment-targets/<name>``, kind ``ray``)::

    {
      "address": "http://ray-head:8265",     # the dashboard (Serve REST API, package upload)
      "serve_url": "http://ray-head:8000",   # Ray Serve's HTTP proxy
      "gpu_types": ["A100"],                 # accelerator types the cluster's nodes offer
      "num_cpus": 1,                         # per replica
      "downscale_delay_s": 600,              # idle time before Serve removes a replica
      "ready_timeout_seconds": 300,
      "trusted_formats": false
    }

- Files: the server reads the version's files from its artifact store (a local store or a
  bucket; downloads verified by sha256), zips them, and uploads the zip to the cluster as the
  application's ``working_dir`` (Ray stores it content-addressed); every replica checks each
  file's sha256 again before loading. The cluster never needs the Podstack server's address
  or a token.
- Replicas: ``min_replicas``/``max_replicas`` become Ray Serve's autoscaling bounds (a fixed
  ``num_replicas`` when equal); ``gpu_type`` becomes ``accelerator_type`` plus one GPU.
- Rollouts: a new version re-deploys the same application with new arguments; Ray Serve
  starts the new replicas and retires the old ones only once they are up (zero downtime), so
  the runtime's ``instance`` stays the application name and the manager never stops it
  between versions. Rollback is the same update back to the previous version.
- Health: the app's Serve status and the replicas' ``/v2/health/ready`` fold into the probe.
- Egress: every HTTP request this module makes goes through the egress gate; Ray's client
  makes its own, so the address is checked by the gate before each use (see executors/ray.py).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from podstack.errors import ValidationFailed
from podstack.server import egress
from podstack.server.deployments import outbound
from podstack.server.deployments.targets import RAY, Probe, RunSpec, StartFailed, Target
from podstack.server.schedules.executors import ray as ray_jobs

IMPORT_PATH = "podstack.serving.ray_serve:build"
DEPLOYMENT = "model"
_LOCK = threading.Lock()  # one read-modify-write of the cluster's Serve config at a time


def app_name(endpoint: str) -> str:
    return f"podstack-{endpoint}"


def _http_url(value: Any, field: str, example: str) -> str:
    parts = urlsplit(str(value or ""))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(
            f"Ray target config {field} must be an http(s) URL such as {example} (got {value!r}).",
            {"field": f"config.{field}"},
        )
    return str(value).rstrip("/")


# Ray Serve's own default: a burst does not make replicas come and go every few seconds.
DOWNSCALE_DELAY_S = 600.0


class RayServeTarget(Target):
    kind = RAY
    autoscales = True  # Ray Serve scales replicas between min_replicas and max_replicas

    def __init__(self, name: str, config: dict[str, Any], settings: Any, store: Any) -> None:
        super().__init__(name, config, settings, store)
        # Shape only here (built on every read); the egress rules apply at every use.
        self.address = _http_url(config.get("address"), "address", "http://ray-head:8265")
        self.serve_url = _http_url(config.get("serve_url"), "serve_url", "http://ray-head:8000")
        num_cpus = config.get("num_cpus", 1)
        if not isinstance(num_cpus, (int, float)) or isinstance(num_cpus, bool) or num_cpus < 0:
            raise ValidationFailed(
                f"Ray target config num_cpus must be a number >= 0 (got {num_cpus!r}).",
                {"field": "config.num_cpus"},
            )
        self.num_cpus = float(num_cpus)
        delay = config.get("downscale_delay_s", DOWNSCALE_DELAY_S)
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 < delay <= 86400:
            raise ValidationFailed(
                "Ray target config downscale_delay_s must be a number of seconds in (0, 86400] "
                f"(got {delay!r}).",
                {"field": "config.downscale_delay_s"},
            )
        self.downscale_delay_s = float(delay)
        self.ready_timeout = float(config.get("ready_timeout_seconds", 300))

    def gpu_types(self) -> list[str]:
        return ["cpu", *[str(g) for g in self.config.get("gpu_types") or []]]

    # ---------------------------------------------------------------- Ray's client

    def _serve(self) -> Any:
        try:
            ray_jobs.probe(self.address, egress.allow_list(self.settings))
        except ray_jobs.RayUnreachable as exc:
            raise StartFailed(exc.message) from None
        try:
            from ray.dashboard.modules.serve.sdk import ServeSubmissionClient
        except ImportError:
            raise StartFailed(
                "The ray target needs the 'ray' package on the server: pip install 'podstack[ray]'."
            ) from None
        return ServeSubmissionClient(self.address)

    def _apps(self, client: Any) -> dict[str, Any]:
        return dict(client.get_serve_details().get("applications") or {})

    @staticmethod
    def _configs(apps: dict[str, Any]) -> list[dict[str, Any]]:
        return [a["deployed_app_config"] for a in apps.values() if a.get("deployed_app_config")]

    # ---------------------------------------------------------------- files

    def _package(self, client: Any, spec: RunSpec) -> str:
        """The version's files as a ``gcs://`` package on the cluster (uploaded once: Ray
        names packages by content)."""
        tmp = Path(tempfile.mkdtemp(prefix="podstack-ray-"))
        try:
            root = tmp / "model"
            for rel, sha in spec.files:
                dest = (root / rel).resolve()
                if root.resolve() not in dest.parents:
                    raise StartFailed(f"file path {rel!r} leaves the model directory")
                # From a bucket this download is verified against sha; the replicas verify
                # every file again after the transfer.
                self.store.materialize(sha, dest, link=False)
            env: dict[str, Any] = {"working_dir": str(root)}
            client._upload_working_dir_if_needed(env)  # Ray's own upload (the Serve CLI's)
            return str(env["working_dir"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------------- runtime operations

    def app_config(self, spec: RunSpec, working_dir: str, instance: str) -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if spec.gpu_type:
            actor.update(num_gpus=1, accelerator_type=spec.gpu_type)
        deployment: dict[str, Any] = {"name": DEPLOYMENT, "ray_actor_options": actor}
        if spec.min_replicas == spec.max_replicas:
            deployment["num_replicas"] = spec.max_replicas
        else:
            deployment["autoscaling_config"] = {
                "min_replicas": spec.min_replicas,
                "max_replicas": spec.max_replicas,
                "target_ongoing_requests": 2,
                "upscale_delay_s": 2,
                "downscale_delay_s": self.downscale_delay_s,
            }
        return {
            "name": app_name(spec.endpoint),
            "route_prefix": f"/{spec.endpoint}",
            "import_path": IMPORT_PATH,
            "runtime_env": {"working_dir": working_dir},
            "args": {
                "name": spec.endpoint,
                "version": str(spec.version),
                "instance": instance,
                "trusted": spec.trusted,
                "files": [[p, s] for p, s in spec.files],
            },
            "deployments": [deployment],
        }

    def start(self, spec: RunSpec) -> dict[str, Any]:
        client = self._serve()
        name = app_name(spec.endpoint)
        digest = hashlib.sha256(repr(sorted(spec.key().items())).encode()).hexdigest()[:10]
        serving_instance = f"{name}-v{spec.version}-{digest}"
        try:
            working_dir = self._package(client, spec)
            with _LOCK:
                others = [c for c in self._configs(self._apps(client)) if c.get("name") != name]
                config = self.app_config(spec, working_dir, serving_instance)
                client.deploy_applications({"applications": [*others, config]})
        except StartFailed:
            raise
        except Exception as exc:
            raise StartFailed(f"Ray Serve refused the deployment: {ray_jobs._error_text(exc)}")
        runtime = {
            "kind": RAY,
            # Stable across versions: Ray Serve swaps replicas in place, so the manager must
            # not stop the "old" runtime (it is the same application).
            "instance": name,
            "app": name,
            "serving_instance": serving_instance,
            "address": self.address,
            "serve_url": self.serve_url,
            "route": f"/{spec.endpoint}",
            "version": spec.version,
            "version_id": spec.version_id,
            "key": spec.key(),
            "started_at": time.time(),
        }
        self._wait_ready(client, runtime)
        return runtime

    def _wait_ready(self, client: Any, runtime: dict[str, Any]) -> None:
        """Until the application is RUNNING on the new version (its replicas report the new
        instance id), or its deployment failed."""
        deadline = time.monotonic() + self.ready_timeout
        status, message = "", ""
        while time.monotonic() < deadline:
            app = self._apps(client).get(runtime["app"]) or {}
            status, message = str(app.get("status", "")), str(app.get("message", ""))
            if status == "DEPLOY_FAILED":
                raise StartFailed(f"Ray Serve could not deploy the model: {message[-1500:]}")
            if status == "RUNNING" and self._serves(runtime):
                return
            time.sleep(0.5)
        raise StartFailed(
            f"the Ray Serve application was not ready within {self.ready_timeout:.0f}s "
            f"(status {status or 'unknown'}: {message[-500:]})"
        )

    def _get(self, runtime: dict[str, Any], path: str, timeout: float) -> httpx.Response:
        return outbound.shared(self.settings).request(
            "GET", f"{self.base_url(runtime)}{path}", timeout=timeout
        )

    def _serves(self, runtime: dict[str, Any]) -> bool:
        try:
            r = self._get(runtime, "/v2", 3.0)
            return r.status_code == 200 and r.json().get("instance") == runtime["serving_instance"]
        except (httpx.HTTPError, ValueError, egress.Refused):
            return False

    def stop(self, runtime: dict[str, Any]) -> None:
        try:
            client = self._serve()
            with _LOCK:
                apps = self._apps(client)
                if runtime.get("app") not in apps:
                    return
                rest = [c for c in self._configs(apps) if c.get("name") != runtime.get("app")]
                # The declarative config lists every app: deploying the rest deletes ours and
                # keeps Serve (and its proxy's port) up, unlike Serve's "delete all".
                client.deploy_applications({"applications": rest})
        except StartFailed:
            return  # the cluster is unreachable: nothing we can stop now

    def alive(self, runtime: dict[str, Any]) -> bool:
        try:
            app = self._apps(self._serve()).get(runtime.get("app", "")) or {}
        except Exception:
            return False
        return app.get("status") in ("RUNNING", "DEPLOYING", "UNHEALTHY")

    def probe(self, runtime: dict[str, Any]) -> Probe:
        try:
            app = self._apps(self._serve()).get(runtime.get("app", "")) or {}
        except Exception as exc:
            return Probe(False, None, f"Ray dashboard not reachable: {exc}")
        status = str(app.get("status") or "missing")
        deployment = (app.get("deployments") or {}).get(DEPLOYMENT) or {}
        replicas = [r for r in deployment.get("replicas") or [] if r.get("state") == "RUNNING"]
        serve = f"Ray Serve {status}, {len(replicas)} replica(s) running"
        t0 = time.perf_counter()
        try:
            r = self._get(runtime, "/v2/health/ready", 3.0)
        except httpx.HTTPError as exc:
            return Probe(False, None, f"readiness check failed: {type(exc).__name__} ({serve})")
        except egress.Refused as exc:
            return Probe(False, None, f"readiness check not sent: {exc.reason} ({serve})")
        ms = round((time.perf_counter() - t0) * 1000, 2)
        ok = r.status_code == 200 and status == "RUNNING"
        return Probe(
            ok, ms, f"ready ({serve})" if ok else f"not ready: HTTP {r.status_code}, {serve}"
        )

    def base_url(self, runtime: dict[str, Any]) -> str | None:
        return f"{runtime.get('serve_url', self.serve_url)}{runtime.get('route', '')}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "address": self.address, "serve_url": self.serve_url}
