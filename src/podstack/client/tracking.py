"""SDK: experiments, runs, params, metrics, tags, datasets and run search."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from podstack.client.base import BaseClient, PagedList, seg, wire_float
from podstack.schemas import tracking as sch
from podstack.schemas.artifacts import ArtifactFile


class RunClient(Protocol):
    """What an ``ActiveRun`` calls on its client. ``MLOpsClient`` is one; a protocol, so this
    mixin needs no import of the client that is composed from it (no import circle)."""

    def get_run(self, run_id: str) -> sch.Run: ...
    def end_run(self, run_id: str, status: str = "FINISHED") -> sch.Run: ...
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...
    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int | None = None,
        timestamp: datetime | None = None,
    ) -> None: ...
    def set_run_tags(self, run_id: str, tags: Mapping[str, Any]) -> None: ...
    def log_dataset(
        self,
        run_id: str,
        name: str,
        source_uri: str | None = None,
        digest: str | None = None,
        context: str | None = None,
    ) -> sch.Dataset: ...
    def log_artifact(
        self, run_id: str, local_path: str, artifact_path: str | None = None
    ) -> list[ArtifactFile]: ...
    def log_artifacts(
        self, run_id: str, local_dir: str, artifact_path: str | None = None
    ) -> list[ArtifactFile]: ...


class ActiveRun:
    """A run in progress. As a context manager it ends FINISHED on normal exit, FAILED on an
    exception (which propagates) and KILLED on Ctrl-C."""

    def __init__(self, client: RunClient, run: sch.Run) -> None:
        self._client = client
        self._run = run
        self.id: str = run.id
        self.experiment_id: str = run.experiment_id
        # start_run(log_system_metrics=True): a SystemMetricsSampler, stopped by end().
        self._system_metrics: Any = None

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} experiment={self.experiment_id}>"

    @property
    def info(self) -> sch.Run:
        """Fresh view of the run (params, latest metrics, tags, status)."""
        return self._client.get_run(self.id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._client.log_params(self.id, params)

    def log_param(self, key: str, value: Any) -> None:
        self._client.log_params(self.id, {key: value})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._client.log_metrics(self.id, metrics, step=step)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self._client.log_metrics(self.id, {key: value}, step=step)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> Any:
        """A file, or a directory under its own name (``checkpoints/…``), as in MLflow."""
        return self._client.log_artifact(self.id, local_path, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> Any:
        """A directory's contents, without the directory's name, as in MLflow."""
        return self._client.log_artifacts(self.id, local_dir, artifact_path)

    def log_model(
        self,
        model: Any,
        artifact_path: str = "model",
        *,
        input_example: Any = None,
        format: str | None = None,
    ) -> Any:
        """Saves ``model`` (scikit-learn, PyTorch or ONNX) as a servable MLmodel directory
        under ``artifact_path``; see ``podstack.client.models_io``."""
        from podstack.client.models_io import log_model

        return log_model(
            self._client,
            self.id,
            model,
            artifact_path,
            input_example=input_example,
            format=format,
        )

    def log_dataset(
        self,
        name: str,
        source_uri: str | None = None,
        digest: str | None = None,
        context: str | None = None,
    ) -> sch.Dataset:
        return self._client.log_dataset(
            self.id, name, source_uri=source_uri, digest=digest, context=context
        )

    def set_tag(self, key: str, value: Any) -> None:
        self._client.set_run_tags(self.id, {key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._client.set_run_tags(self.id, tags)

    def end(self, status: str = "FINISHED") -> sch.Run:
        if self._system_metrics is not None:
            self._system_metrics.stop()  # its last sample goes in while the run is open
        return self._client.end_run(self.id, status)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        try:
            self.end(status)
        except Exception:
            if exc_type is None:
                raise
            # Never mask the training script's own exception with a bookkeeping error.


class TrackingAPI(BaseClient):
    # ------------------------------------------------------------ experiments
    def create_experiment(
        self, name: str, description: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> sch.Experiment:
        body = {
            "name": name,
            "description": description,
            "tags": {k: str(v) for k, v in (tags or {}).items()},
        }
        return sch.Experiment.model_validate(self._request("POST", "/experiments", json=body))

    def get_experiment(self, experiment_id: str) -> sch.Experiment:
        """By id or by name."""
        return sch.Experiment.model_validate(
            self._request("GET", f"/experiments/{seg(experiment_id)}")
        )

    def list_experiments(
        self,
        query: str | None = None,
        include_archived: bool = False,
        max_results: int | None = None,
    ) -> list[sch.Experiment]:
        params = {"q": query, "include_archived": include_archived, "limit": 1000}
        return [
            sch.Experiment.model_validate(e)
            for e in self._paginate("/experiments", "items", params, max_results)
        ]

    def update_experiment(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        archived: bool | None = None,
    ) -> sch.Experiment:
        body: dict[str, Any] = {
            "name": name,
            "description": description,
            "archived": archived,
            "tags": None if tags is None else {k: str(v) for k, v in tags.items()},
        }
        body = {k: v for k, v in body.items() if v is not None}
        return sch.Experiment.model_validate(
            self._request("PATCH", f"/experiments/{seg(experiment_id)}", json=body)
        )

    def archive_experiment(self, experiment_id: str) -> sch.Experiment:
        return self.update_experiment(experiment_id, archived=True)

    def delete_experiment(self, experiment_id: str) -> None:
        self._request("DELETE", f"/experiments/{seg(experiment_id)}")

    # ------------------------------------------------------------ runs
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        start_time: datetime | None = None,
        run_id: str | None = None,
    ) -> sch.Run:
        """``start_time`` and ``run_id`` (``run-`` + 32 hex) are for importers that keep the
        source's start time and id (``podstack import mlflow``)."""
        body: dict[str, Any] = {
            "experiment_id": experiment_id,
            "run_name": run_name,
            "tags": {k: str(v) for k, v in (tags or {}).items()},
        }
        if start_time is not None:
            body["start_time"] = start_time.isoformat()
        if run_id is not None:
            body["id"] = run_id
        return sch.Run.model_validate(self._request("POST", "/runs", json=body))

    def start_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        log_system_metrics: bool = False,
        system_metrics_interval: float = 10.0,
    ) -> ActiveRun:
        """Starts a run in experiment ``experiment_id`` (an id or a name; an unknown name
        creates the experiment). Use as ``with client.start_run(...) as run:``.

        ``log_system_metrics=True`` samples CPU, memory and (with ``nvidia-ml-py``) GPU use
        every ``system_metrics_interval`` seconds into ``system/…`` metrics until the run
        ends; it needs psutil (``pip install 'podstack[system-metrics]'``)."""
        sampler = None
        if log_system_metrics:
            from podstack.client.system_metrics import SystemMetricsSampler

            # Built before the run: a missing psutil or a bad interval leaves no orphan run.
            sampler = SystemMetricsSampler(system_metrics_interval)
        run = ActiveRun(self, self.create_run(experiment_id, run_name, tags))  # type: ignore[arg-type]
        if sampler is not None:
            run._system_metrics = sampler
            sampler.start(lambda m, step: self.log_metrics(run.id, m, step=step))
        return run

    def get_run(self, run_id: str) -> sch.Run:
        return sch.Run.model_validate(self._request("GET", f"/runs/{seg(run_id)}"))

    def end_run(
        self, run_id: str, status: str = "FINISHED", end_time: datetime | None = None
    ) -> sch.Run:
        """Ends the run with ``status``, at ``end_time`` (default now; importers keep the
        source's)."""
        body: dict[str, Any] = {"status": status.upper()}
        if end_time is not None:
            body["end_time"] = end_time.isoformat()
        return sch.Run.model_validate(self._request("PATCH", f"/runs/{seg(run_id)}", json=body))

    def update_run(
        self, run_id: str, *, name: str | None = None, notes: str | None = None
    ) -> sch.Run:
        body = {k: v for k, v in {"name": name, "notes": notes}.items() if v is not None}
        return sch.Run.model_validate(self._request("PATCH", f"/runs/{seg(run_id)}", json=body))

    def delete_run(self, run_id: str) -> None:
        self._request("DELETE", f"/runs/{seg(run_id)}")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._request("POST", f"/runs/{seg(run_id)}/params", json={"params": dict(params)})

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """All points in one request and one bulk insert."""
        body: dict[str, Any] = {
            "metrics": {k: wire_float(v) for k, v in metrics.items()},
            "step": step,
        }
        if timestamp is not None:
            body["timestamp"] = timestamp.isoformat()
        self._request("POST", f"/runs/{seg(run_id)}/metrics", json=body)

    def log_metric_points(self, run_id: str, points: list[Mapping[str, Any]]) -> None:
        """Many (key, value, step[, timestamp]) points at once, e.g. a whole history."""
        wire = []
        for p in points:
            q = dict(p)
            q["value"] = wire_float(q["value"])
            if isinstance(q.get("timestamp"), datetime):
                q["timestamp"] = q["timestamp"].isoformat()
            wire.append(q)
        self._request("POST", f"/runs/{seg(run_id)}/metrics", json={"points": wire})

    def get_metric_history(self, run_id: str, key: str) -> list[sch.MetricPoint]:
        return [
            sch.MetricPoint.model_validate(p)
            for p in self._paginate(
                f"/runs/{seg(run_id)}/metrics/{seg(key)}/history", "items", {"limit": 100_000}
            )
        ]

    def set_run_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._request(
            "POST", f"/runs/{seg(run_id)}/tags", json={"tags": {k: str(v) for k, v in tags.items()}}
        )

    def delete_run_tag(self, run_id: str, key: str) -> None:
        self._request("DELETE", f"/runs/{seg(run_id)}/tags/{seg(key)}")

    def log_dataset(
        self,
        run_id: str,
        name: str,
        source_uri: str | None = None,
        digest: str | None = None,
        context: str | None = None,
    ) -> sch.Dataset:
        body = {"name": name, "source_uri": source_uri, "digest": digest, "context": context}
        return sch.Dataset.model_validate(
            self._request("POST", f"/runs/{seg(run_id)}/datasets", json=body)
        )

    def search_runs(
        self,
        experiment_ids: list[str] | str | None = None,
        filter: str | None = None,
        status: str | None = None,
        order_by: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> PagedList:
        """One page of runs (``result.next_page_token`` for the next). ``filter`` example:
        ``"metrics.accuracy >= 0.9 and params.lr = '0.001'"``."""
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        body = {
            "experiment_ids": experiment_ids,
            "filter": filter,
            "status": status.upper() if status else None,
            "order_by": order_by,
            "limit": max_results,
            "page_token": page_token,
        }
        page = self._request("POST", "/runs/search", json=body)
        out = PagedList(sch.Run.model_validate(r) for r in page["items"])
        out.next_page_token = page.get("next_page_token")
        return out
