"""Reading a running MLflow server (3.x) through its REST API, for ``podstack import mlflow``.

Only what the importer needs, read-only: experiments, runs, full metric histories, artifacts
(listed and downloaded through the server: the proxied ``mlflow-artifacts`` API, or
``/get-artifact`` for stores the server reads itself), logged models (MLflow 3), registered
models and their versions.

This runs in the CLI, on the user's machine, not in the Podstack server, so the server's
egress rules do not apply; but redirects are never followed to another host (a server that
answers with one is reported, not trusted), and credentials go only to the given URL:
``MLFLOW_TRACKING_TOKEN`` as a bearer token, or ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from podstack.tls import default_ssl_context

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
MAX_REDIRECTS = 5
CHUNK = 1024 * 1024


class MlflowSourceError(Exception):
    """The MLflow server could not be read: unreachable, an error answer, or not MLflow."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RemoteFile:
    """A file to copy: its path relative to the root being copied, size, and how to get it."""

    path: str
    size: int | None
    url_path: str
    params: dict[str, str] | None = None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def proxied_path(uri: str) -> str | None:
    """``mlflow-artifacts:/1/<run>/artifacts`` (or ``mlflow-artifacts://host:port/…``) -> the
    path under the proxied artifact API; None for any other scheme."""
    if not uri.startswith("mlflow-artifacts:"):
        return None
    return urlsplit(uri).path.strip("/")


class MlflowSource:
    """An MLflow tracking server, read through its REST API."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MlflowSourceError(
                f"--from must be the MLflow server's http(s) URL, e.g. http://mlflow:5000 "
                f"(got {url!r})."
            )
        self.url = url.rstrip("/")
        headers = {"User-Agent": "podstack-import-mlflow"}
        auth: httpx.BasicAuth | None = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif username and password is not None:
            auth = httpx.BasicAuth(username, password)
        # follow_redirects=False: redirects are handled in _send, same origin only.
        self._http = httpx.Client(
            headers=headers,
            auth=auth,
            timeout=timeout,
            follow_redirects=False,
            verify=default_ssl_context(),
        )

    @classmethod
    def from_env(cls, url: str) -> MlflowSource:
        """Credentials from MLflow's own variables, as the MLflow client reads them."""
        return cls(
            url,
            token=os.environ.get("MLFLOW_TRACKING_TOKEN") or None,
            username=os.environ.get("MLFLOW_TRACKING_USERNAME") or None,
            password=os.environ.get("MLFLOW_TRACKING_PASSWORD"),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MlflowSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> httpx.Response:
        url = self.url + path
        for _ in range(MAX_REDIRECTS + 1):
            try:
                req = self._http.build_request(method, url, params=params, json=json)
                resp = self._http.send(req, stream=stream)
            except httpx.TimeoutException as exc:
                raise MlflowSourceError(
                    f"The MLflow server at {self.url} did not answer in time ({path}: "
                    f"{type(exc).__name__}). Check that it is running and not overloaded."
                ) from None
            except httpx.TransportError as exc:
                raise MlflowSourceError(
                    f"Cannot reach the MLflow server at {self.url}: {exc or type(exc).__name__}. "
                    "Check --from and that `mlflow server` is running and reachable from here."
                ) from None
            if not resp.is_redirect:
                return resp
            target = urljoin(url, resp.headers.get("location", ""))
            resp.close()
            if _origin(target) != _origin(self.url):
                # Never send our credentials, or trust data, from another host silently.
                raise MlflowSourceError(
                    f"The MLflow server at {self.url} redirected {path} to another host "
                    f"({target}); not followed. If that is the real server, pass its URL "
                    "with --from."
                )
            url, params = target, None
        raise MlflowSourceError(f"Too many redirects from the MLflow server at {self.url}.")

    def _check(self, resp: httpx.Response, path: str) -> None:
        if resp.status_code < 400:
            return
        if resp.is_stream_consumed is False:
            resp.read()
        detail = resp.text[:300].strip()
        try:
            body = resp.json()
            if isinstance(body, dict) and body.get("message"):
                detail = f"{body.get('error_code', 'ERROR')}: {body['message']}"
        except ValueError:
            pass
        hint = ""
        if resp.status_code in (401, 403):
            hint = (
                " Set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD) to credentials the MLflow server accepts."
            )
        raise MlflowSourceError(
            f"The MLflow server at {self.url} answered {resp.status_code} to {path}: "
            f"{detail}.{hint}"
        )

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = self._send(method, path, **kw)
        self._check(resp, path)
        try:
            body = resp.json()
        except ValueError:
            raise MlflowSourceError(
                f"{self.url}{path} did not answer with JSON: is --from an MLflow tracking "
                "server (not its UI behind a proxy, or another service)?"
            ) from None
        if not isinstance(body, dict):
            raise MlflowSourceError(f"{self.url}{path} answered with unexpected JSON.")
        return body

    def _pages(
        self, method: str, path: str, key: str, body: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            req = dict(body)
            if token:
                req["page_token"] = token
            if method == "GET":
                page = self._json("GET", path, params=req)
            else:
                page = self._json("POST", path, json=req)
            yield from page.get(key, [])
            token = page.get("next_page_token")
            if not token:
                return

    # ------------------------------------------------------------------ tracking

    def ping(self) -> None:
        """Fails with a clear message unless ``url`` is a reachable MLflow tracking server."""
        self._json("POST", f"{API}/experiments/search", json={"max_results": 1})

    def experiments(self, view_type: str = "ACTIVE_ONLY") -> list[dict[str, Any]]:
        body = {"max_results": 1000, "view_type": view_type}
        return list(self._pages("POST", f"{API}/experiments/search", "experiments", body))

    def runs(self, experiment_id: str, view_type: str = "ACTIVE_ONLY") -> list[dict[str, Any]]:
        """Every run of the experiment, oldest first (parents before their children)."""
        body = {
            "experiment_ids": [experiment_id],
            "run_view_type": view_type,
            "max_results": 1000,
            "order_by": ["attributes.start_time ASC"],
        }
        return list(self._pages("POST", f"{API}/runs/search", "runs", body))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"{API}/runs/get", params={"run_id": run_id})["run"]

    def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        body = {"run_id": run_id, "metric_key": key, "max_results": 25000}
        return list(self._pages("GET", f"{API}/metrics/get-history", "metrics", body))

    def logged_models(self, experiment_id: str) -> list[dict[str, Any]]:
        """MLflow 3 logged models of the experiment (``[]`` on servers without them)."""
        body = {"experiment_ids": [experiment_id], "max_results": 100}
        return list(self._pages("POST", f"{API}/logged-models/search", "models", body))

    # ------------------------------------------------------------------ artifacts

    def run_artifacts(self, run: dict[str, Any]) -> list[RemoteFile]:
        """Every artifact file of the run, with its path relative to the run's root."""
        info = run["info"]
        run_id = info["run_id"]
        proxied = proxied_path(info.get("artifact_uri") or "")
        out: list[RemoteFile] = []
        pending = [""]
        while pending:
            path = pending.pop()
            params = {"run_id": run_id, **({"path": path} if path else {})}
            for f in self._pages("GET", f"{API}/artifacts/list", "files", params):
                rel = f["path"]
                if f.get("is_dir"):
                    pending.append(rel)
                elif proxied is not None:
                    out.append(
                        RemoteFile(rel, _size(f), f"{ARTIFACTS_API}/{quote(proxied)}/{quote(rel)}")
                    )
                else:
                    # A store the MLflow server reads itself (s3, gs, a local root): its
                    # /get-artifact route streams any run file.
                    out.append(
                        RemoteFile(
                            rel, _size(f), "/get-artifact", {"path": rel, "run_uuid": run_id}
                        )
                    )
        return sorted(out, key=lambda f: f.path)

    def proxied_tree(self, root: str) -> list[RemoteFile]:
        """Every file under ``root`` of the proxied artifact store (a logged model's or a
        version's files), with paths relative to ``root``."""
        out: list[RemoteFile] = []
        pending = [""]
        while pending:
            rel_dir = pending.pop()
            full = f"{root}/{rel_dir}".rstrip("/")
            page = self._json("GET", ARTIFACTS_API, params={"path": full})
            for f in page.get("files", []):
                # This API lists base names only.
                rel = f"{rel_dir}/{f['path']}".lstrip("/")
                if f.get("is_dir"):
                    pending.append(rel)
                else:
                    out.append(
                        RemoteFile(rel, _size(f), f"{ARTIFACTS_API}/{quote(root)}/{quote(rel)}")
                    )
        return sorted(out, key=lambda f: f.path)

    def download(self, file: RemoteFile, dest: Path) -> tuple[str, int]:
        """Streams ``file`` to ``dest``; returns (sha256, size) of what arrived."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        resp = self._send("GET", file.url_path, params=file.params, stream=True)
        try:
            self._check(resp, file.url_path)
            with dest.open("wb") as out:
                for chunk in resp.iter_bytes(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except httpx.TransportError as exc:
            raise MlflowSourceError(
                f"Download of {file.path} from the MLflow server at {self.url} broke off: "
                f"{exc or type(exc).__name__}."
            ) from None
        finally:
            resp.close()
        if file.size is not None and size != file.size:
            raise MlflowSourceError(
                f"{file.path}: the MLflow server listed {file.size} bytes but sent {size}."
            )
        return digest.hexdigest(), size

    # ------------------------------------------------------------------ registry

    def registered_models(self) -> list[dict[str, Any]]:
        body = {"max_results": 1000}
        return list(
            self._pages("GET", f"{API}/registered-models/search", "registered_models", body)
        )

    def model_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of model ``name``, oldest first."""
        escaped = name.replace("'", "\\'")
        body = {"filter": f"name = '{escaped}'", "max_results": 10000}
        rows = list(self._pages("GET", f"{API}/model-versions/search", "model_versions", body))
        return sorted(rows, key=lambda v: int(v["version"]))

    def version_download_uri(self, name: str, version: str) -> str:
        params = {"name": name, "version": version}
        doc = self._json("GET", f"{API}/model-versions/get-download-uri", params=params)
        return str(doc.get("artifact_uri") or "")


def _size(f: dict[str, Any]) -> int | None:
    raw = f.get("file_size")
    return None if raw is None else int(raw)
