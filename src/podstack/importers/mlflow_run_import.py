"""The experiment and run half of ``podstack import mlflow``: ``RunImporter`` copies MLflow
experiments and runs (params, full metric histories, datasets, artifacts with each file's
sha256 checked, MLflow 3 logged models' files) into Podstack. ``MlflowImporter``
(mlflow_import.py) adds the selection, the order of the import and the model registry copy.

Also here, as both halves use them: the marks an import leaves, the wire-schema validators
deciding what can be copied, and the summary."""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from podstack.client.artifacts import artifact_api_path
from podstack.client.client import MLOpsClient
from podstack.client.transfer import upload_file
from podstack.errors import NotFound, ValidationFailed
from podstack.importers.mlflow_source import MlflowSource, MlflowSourceError, proxied_path
from podstack.schemas.artifact_paths import validate_artifact_path
from podstack.schemas.artifacts import ArtifactFile
from podstack.schemas.common import Key
from podstack.schemas.tracking import ExperimentName, ParamValue, RunName, TagValue

MARK_RUN = "mlflow.import.run_id"
MARK_DONE = "mlflow.import.complete"
MARK_EXPERIMENT = "mlflow.import.experiment_id"
# Run tag prefix: where a logged model's files went in the run (``…<model id>`` -> path).
MARK_LOGGED_MODEL = "mlflow.import.logged_model."

TERMINAL = {"FINISHED", "FAILED", "KILLED"}
PARAM_BATCH = 1000  # LogParams' limit per request
POINT_BATCH = 20_000  # metric points per request (the API takes up to 100,000)

# Validators of our wire schemas: the one definition of what a key or value may be.
_KEY = TypeAdapter(Key)
_TAG = TypeAdapter(TagValue)
_PARAM = TypeAdapter(ParamValue)
_RUN_NAME = TypeAdapter(RunName)
_EXP_NAME = TypeAdapter(ExperimentName)

Progress = Callable[[str], None]


@dataclass
class Summary:
    """What an import copied, found already there, skipped (and why), or would copy."""

    copied: Counter[str] = field(default_factory=Counter)
    already: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    planned: list[str] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped[reason].append(item)


def _ms(value: Any) -> datetime | None:
    if value in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def is_valid(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def tag_dict(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {str(t["key"]): str(t.get("value") or "") for t in rows or []}


class RunImporter:
    """The state of one import (source, client, summary, what is already in Podstack) and
    the copy of experiments and runs. Use ``MlflowImporter``, which adds the rest."""

    def __init__(
        self,
        source: MlflowSource,
        client: MLOpsClient,
        *,
        experiments: list[str] | None = None,
        models: list[str] | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> None:
        self.source = source
        self.client = client
        self.experiment_filter = experiments
        self.model_filter = models
        self.dry_run = dry_run
        self._progress = progress or (lambda _label: None)
        self._on_total = on_total or (lambda _n: None)
        self.summary = Summary()
        self._experiments: dict[str, dict[str, Any]] = {}  # MLflow id -> experiment
        self._podstack_exp: dict[str, str | None] = {}  # MLflow id -> Podstack id
        self._logged_models: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._done_runs: set[str] = set()  # Podstack ids complete in Podstack
        self._tmp = Path(tempfile.mkdtemp(prefix="podstack-import-mlflow-"))

    # ------------------------------------------------------------------ experiments

    def _ensure_experiment(self, mlflow_id: str) -> str | None:
        """The Podstack experiment receiving this MLflow experiment's runs (None: skipped)."""
        if mlflow_id in self._podstack_exp:
            return self._podstack_exp[mlflow_id]
        exp = self._experiments.get(mlflow_id)
        if exp is None:
            raise MlflowSourceError(f"MLflow experiment {mlflow_id} is not on the server.")
        name = exp["name"]
        label = f"experiment {name!r}"
        result: str | None = None
        if not is_valid(_EXP_NAME, name):
            self.summary.skip(
                label, "name not valid in Podstack (no '/' or control characters, 1-256 chars)"
            )
        else:
            tags = self._valid_tags(tag_dict(exp.get("tags", [])), label)
            tags[MARK_EXPERIMENT] = mlflow_id
            description = tags.get("mlflow.note.content")
            try:
                current = self.client.get_experiment(name)
            except NotFound:
                current = None
            if current is not None and current.archived:
                self.summary.skip(label, "its Podstack namesake is archived; unarchive it first")
            elif self.dry_run:
                result = current.id if current else ""
                if current is None:
                    self.summary.planned.append(f"create {label}")
            elif current is None:
                result = self.client.create_experiment(name, description, tags).id
                self.summary.copied["experiments"] += 1
            else:
                result = current.id
                merged = {**tags, **current.tags}  # what Podstack already has wins
                if merged != current.tags:
                    self.client.update_experiment(current.id, tags=merged)
                self.summary.already["experiments"] += 1
        self._podstack_exp[mlflow_id] = result
        return result

    # ------------------------------------------------------------------ runs

    def _valid_tags(self, tags: dict[str, str], owner: str) -> dict[str, str]:
        out = {}
        for k, v in tags.items():
            if not is_valid(_KEY, k):
                self.summary.skip(f"{owner}: tag {k[:80]!r}", "tag key not valid in Podstack")
            elif not is_valid(_TAG, v):
                self.summary.skip(f"{owner}: tag {k!r}", "tag value longer than 5000 characters")
            else:
                out[k] = v
        return out

    def _podstack_run_done(self, pid: str) -> tuple[bool, bool]:
        """(exists, complete) of the Podstack run ``pid``."""
        if pid in self._done_runs:
            return True, True
        try:
            run = self.client.get_run(pid)
        except NotFound:
            return False, False
        done = run.tags.get(MARK_DONE) == "true"
        if done:
            self._done_runs.add(pid)
        return True, done

    def _import_run(self, run: dict[str, Any], podstack_exp: str) -> None:
        info = run["info"]
        mid = info["run_id"]
        pid = "run-" + mid.lower()
        label = f"run {mid}"
        exists, done = self._podstack_run_done(pid)
        if done:
            self.summary.already["runs"] += 1
            return
        if self.dry_run:
            self.summary.planned.append(
                f"{'re-copy interrupted' if exists else 'copy'} {label} "
                f"({info.get('run_name') or 'unnamed'})"
            )
            return
        if exists:
            # Interrupted last time: start it again, so nothing is half there or doubled.
            self.client.delete_run(pid)
            self.summary.copied["runs resumed"] += 1
        data = run.get("data") or {}
        tags = self._valid_tags(tag_dict(data.get("tags", [])), label)
        tags[MARK_RUN] = mid
        name = info.get("run_name") or None
        if name is not None and not is_valid(_RUN_NAME, name):
            self.summary.skip(f"{label}: name", "run name not valid in Podstack")
            name = None
        status = info.get("status") or "FINISHED"
        if status not in TERMINAL and status != "RUNNING":
            self.summary.skip(f"{label}: status {status}", "no such status in Podstack; RUNNING")
        self.client.create_run(
            podstack_exp, name, tags, start_time=_ms(info.get("start_time")), run_id=pid
        )
        self._copy_params(pid, data.get("params", []), label)
        self._copy_metrics(pid, mid, data.get("metrics", []), label)
        self._copy_datasets(pid, (run.get("inputs") or {}).get("dataset_inputs", []), label)
        top_level = self._copy_run_artifacts(pid, run, label)
        marks = self._copy_logged_models(pid, info, top_level, label)
        if status in TERMINAL:
            self.client.end_run(pid, status, end_time=_ms(info.get("end_time")))
        # Last: only a run with everything in it counts as imported.
        self.client.set_run_tags(pid, {**marks, MARK_DONE: "true"})
        self._done_runs.add(pid)
        self.summary.copied["runs"] += 1

    def _copy_params(self, pid: str, rows: list[dict[str, Any]], label: str) -> None:
        params = {}
        for p in rows:
            k, v = str(p["key"]), str(p.get("value") or "")
            if not is_valid(_KEY, k):
                self.summary.skip(f"{label}: param {k[:80]!r}", "param key not valid in Podstack")
            elif not is_valid(_PARAM, v):
                self.summary.skip(f"{label}: param {k!r}", "param value over 6000 characters")
            else:
                params[k] = v
        items = list(params.items())
        for i in range(0, len(items), PARAM_BATCH):
            self.client.log_params(pid, dict(items[i : i + PARAM_BATCH]))
        self.summary.copied["params"] += len(items)

    def _copy_metrics(self, pid: str, mid: str, latest: list[dict[str, Any]], label: str) -> None:
        for key in sorted({str(m["key"]) for m in latest}):
            if not is_valid(_KEY, key):
                self.summary.skip(f"{label}: metric {key[:80]!r}", "metric key not valid")
                continue
            points = []
            for m in self.source.metric_history(mid, key):
                step = int(m.get("step") or 0)
                if step < 0:
                    self.summary.skip(f"{label}: metric {key!r} step {step}", "negative step")
                    continue
                points.append(
                    {
                        "key": key,
                        "value": float(m["value"]),
                        "step": step,
                        "timestamp": _ms(m.get("timestamp")) or datetime.fromtimestamp(0, UTC),
                    }
                )
            for i in range(0, len(points), POINT_BATCH):
                self.client.log_metric_points(pid, points[i : i + POINT_BATCH])
            self.summary.copied["metric points"] += len(points)

    def _copy_datasets(self, pid: str, inputs: list[dict[str, Any]], label: str) -> None:
        for d in inputs:
            ds = d.get("dataset") or {}
            context = tag_dict(d.get("tags", [])).get("mlflow.data.context")
            source = ds.get("source") or None
            try:
                self.client.log_dataset(
                    pid, ds.get("name") or "dataset", source, ds.get("digest"), context
                )
            except ValidationFailed as exc:
                self.summary.skip(f"{label}: dataset {ds.get('name')!r}", exc.message)
                continue
            self.summary.copied["datasets"] += 1

    def _upload_verified(self, pid: str, target: str, local: Path, sha: str, size: int) -> None:
        doc = upload_file(
            self.client, artifact_api_path(pid, target), local, sha256=sha, progress=False
        )
        stored = ArtifactFile.model_validate(doc)
        if stored.sha256 != sha or stored.size != size:
            raise MlflowSourceError(
                f"{target} in run {pid}: Podstack recorded sha256 {stored.sha256} "
                f"({stored.size} bytes) but {sha} ({size} bytes) was downloaded; the run is "
                "left incomplete and will be copied again by the next import."
            )
        self.summary.copied["artifact files"] += 1
        self.summary.copied["artifact bytes"] += size

    def _copy_files(self, pid: str, files: list[Any], prefix: str, label: str) -> None:
        for f in files:
            target = f"{prefix}/{f.path}" if prefix else f.path
            try:
                validate_artifact_path(target)
            except ValidationFailed as exc:
                self.summary.skip(f"{label}: artifact {target!r}", exc.message)
                continue
            local = self._tmp / "file"
            sha, size = self.source.download(f, local)
            try:
                self._upload_verified(pid, target, local, sha, size)
            finally:
                local.unlink(missing_ok=True)

    def _copy_run_artifacts(self, pid: str, run: dict[str, Any], label: str) -> set[str]:
        """Copies the run's artifacts; returns their top-level names."""
        files = self.source.run_artifacts(run)
        self._copy_files(pid, files, "", label)
        return {f.path.split("/", 1)[0] for f in files}

    def _logged_models_of(self, mlflow_exp: str) -> dict[str, list[dict[str, Any]]]:
        if mlflow_exp not in self._logged_models:
            by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
            try:
                rows = self.source.logged_models(mlflow_exp)
            except MlflowSourceError:
                rows = []  # an MLflow 2 server: no logged models
            for m in rows:
                mi = m.get("info") or {}
                if mi.get("source_run_id"):
                    by_run[mi["source_run_id"]].append(mi)
            self._logged_models[mlflow_exp] = by_run
        return self._logged_models[mlflow_exp]

    def _copy_logged_models(
        self, pid: str, info: dict[str, Any], taken: set[str], label: str
    ) -> dict[str, str]:
        """An MLflow 3 logged model's files go into the run's artifacts (where MLflow 2 kept
        them, and what ``runs:/<run>/<name>`` means in MLflow 3). Returns the run tags that
        say where each went."""
        marks: dict[str, str] = {}
        for mi in self._logged_models_of(info["experiment_id"]).get(info["run_id"], []):
            model_id = str(mi.get("model_id"))
            root = proxied_path(mi.get("artifact_uri") or "")
            mlabel = f"{label}: logged model {model_id}"
            if root is None:
                self.summary.skip(mlabel, "its files are not in a proxied (mlflow-artifacts) store")
                continue
            name = str(mi.get("name") or "model")
            path = name if name not in taken and is_valid(_KEY, name) else f"models/{model_id}"
            taken.add(path.split("/", 1)[0])
            self._copy_files(pid, self.source.proxied_tree(root), path, mlabel)
            marks[MARK_LOGGED_MODEL + model_id] = path
            self.summary.copied["logged models"] += 1
        return marks
