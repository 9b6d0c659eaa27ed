"""``podstack import mlflow``: copies an MLflow server's data into Podstack through the SDK.

What maps to what:

- an MLflow experiment -> the Podstack experiment of the same name (created if absent; an
  existing one receives the runs, and keeps its own tags where both have one);
- an MLflow run -> a Podstack run with the *same id* (``run-<mlflow id>``, the form the
  MLflow-compatible API shows as the MLflow id again), its start/end time, status, params,
  full metric histories (values, steps, timestamps), tags (``mlflow.parentRunId`` keeps
  nested runs nested), datasets and artifacts (each file's sha256 compared with what
  Podstack recorded);
- an MLflow 3 logged model -> its files under the run's artifacts at the model's name
  (``model/``; ``models/<model id>/`` if the run already has artifacts there);
- a registered model, its versions (linked to their imported runs), version tags, stages
  and aliases -> the same in our registry.

Idempotent and resumable, with no table of its own (migration 0017 stays a no-op): a run
keeps its MLflow id, and is marked ``mlflow.import.complete=true`` only when everything in
it has arrived; a run found without the mark was interrupted and is copied again from
scratch. A version carries ``mlflow.import.version`` (set in the same request that creates
it). So a second import copies nothing twice, and an interrupted one picks up where it was.
"""

from __future__ import annotations

import shutil
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
from podstack.errors import (
    Conflict,
    NotFound,
    PodstackError,
    ValidationFailed,
)
from podstack.importers.mlflow_source import MlflowSource, MlflowSourceError, proxied_path
from podstack.schemas.artifact_paths import validate_artifact_path
from podstack.schemas.artifacts import ArtifactFile
from podstack.schemas.common import Key, Label
from podstack.schemas.tracking import ExperimentName, ParamValue, RunName, TagValue

MARK_RUN = "mlflow.import.run_id"
MARK_DONE = "mlflow.import.complete"
MARK_EXPERIMENT = "mlflow.import.experiment_id"
MARK_VERSION = "mlflow.import.version"
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
_LABEL = TypeAdapter(Label)

NOT_MODELLED = (
    "Not copied (not modelled by Podstack): traces, prompts, evaluation datasets, logged "
    "models' own params and metrics, creation times of experiments, models and versions."
)

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


def _valid(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _tags(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {str(t["key"]): str(t.get("value") or "") for t in rows or []}


class MlflowImporter:
    """One import: ``run()`` returns the summary (also filled in as it goes, so a caller
    can show what was done before a failure)."""

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

    # ------------------------------------------------------------------ selection

    def _select(
        self, wanted: list[str] | None, rows: list[dict[str, Any]], kind: str, keys: list[str]
    ) -> list[dict[str, Any]]:
        if wanted is None:
            return rows
        out, missing = [], []
        for w in wanted:
            match = [r for r in rows if any(str(r.get(k)) == w for k in keys)]
            if match:
                out.extend(m for m in match if m not in out)
            else:
                missing.append(w)
        if missing:
            known = ", ".join(sorted(str(r.get("name")) for r in rows)[:20]) or "none"
            raise MlflowSourceError(
                f"No MLflow {kind} named {', '.join(map(repr, missing))} on {self.source.url}. "
                f"Its {kind}s: {known}."
            )
        return out

    def run(self) -> Summary:
        try:
            return self._run()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _run(self) -> Summary:
        self.source.ping()
        everything = self.experiment_filter is None
        all_exps = self.source.experiments("ALL")
        self._experiments = {e["experiment_id"]: e for e in all_exps}
        if everything and self.model_filter is not None:
            exps: list[dict[str, Any]] = []  # --models alone: only what those models need
        else:
            exps = self._select(
                self.experiment_filter, all_exps, "experiment", ["name", "experiment_id"]
            )
        models: list[dict[str, Any]] = []
        if self.model_filter is not None or everything:
            models = self._select(
                self.model_filter, self.source.registered_models(), "registered model", ["name"]
            )

        plan: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for exp in exps:
            label = f"experiment {exp['name']!r}"
            if exp.get("lifecycle_stage") == "deleted":
                self.summary.skip(label, "deleted in MLflow (restore it there to import it)")
                continue
            runs = self.source.runs(exp["experiment_id"])
            deleted = self.source.runs(exp["experiment_id"], "DELETED_ONLY")
            for r in deleted:
                self.summary.skip(f"run {r['info']['run_id']}", "deleted in MLflow")
            if not runs and exp["experiment_id"] == "0" and everything:
                self.summary.skip(label, "MLflow's default experiment, empty")
                continue
            plan.append((exp, runs))
        versions = {m["name"]: self.source.model_versions(m["name"]) for m in models}
        self._on_total(sum(len(r) for _, r in plan) + sum(len(v) for v in versions.values()))

        for exp, runs in plan:
            pid = self._ensure_experiment(exp["experiment_id"])
            for run in runs:
                self._progress(f"run {run['info'].get('run_name') or run['info']['run_id']}")
                if pid is None:
                    continue
                self._import_run(run, pid)
        for model in models:
            self._import_model(model, versions[model["name"]])
        return self.summary

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
        if not _valid(_EXP_NAME, name):
            self.summary.skip(
                label, "name not valid in Podstack (no '/' or control characters, 1-256 chars)"
            )
        else:
            tags = self._valid_tags(_tags(exp.get("tags", [])), label)
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
            if not _valid(_KEY, k):
                self.summary.skip(f"{owner}: tag {k[:80]!r}", "tag key not valid in Podstack")
            elif not _valid(_TAG, v):
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
        tags = self._valid_tags(_tags(data.get("tags", [])), label)
        tags[MARK_RUN] = mid
        name = info.get("run_name") or None
        if name is not None and not _valid(_RUN_NAME, name):
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
            if not _valid(_KEY, k):
                self.summary.skip(f"{label}: param {k[:80]!r}", "param key not valid in Podstack")
            elif not _valid(_PARAM, v):
                self.summary.skip(f"{label}: param {k!r}", "param value over 6000 characters")
            else:
                params[k] = v
        items = list(params.items())
        for i in range(0, len(items), PARAM_BATCH):
            self.client.log_params(pid, dict(items[i : i + PARAM_BATCH]))
        self.summary.copied["params"] += len(items)

    def _copy_metrics(self, pid: str, mid: str, latest: list[dict[str, Any]], label: str) -> None:
        for key in sorted({str(m["key"]) for m in latest}):
            if not _valid(_KEY, key):
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
            context = _tags(d.get("tags", [])).get("mlflow.data.context")
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
            path = name if name not in taken and _valid(_KEY, name) else f"models/{model_id}"
            taken.add(path.split("/", 1)[0])
            self._copy_files(pid, self.source.proxied_tree(root), path, mlabel)
            marks[MARK_LOGGED_MODEL + model_id] = path
            self.summary.copied["logged models"] += 1
        return marks

    # ------------------------------------------------------------------ registry

    def _ensure_run_for_version(self, run_id: str, label: str) -> str | None:
        """The Podstack id of the version's run, importing the run first if needed."""
        pid = "run-" + run_id.lower()
        if self._podstack_run_done(pid)[1]:
            return pid
        try:
            run = self.source.get_run(run_id)
        except MlflowSourceError as exc:
            self.summary.skip(label, f"its run {run_id} cannot be read from MLflow: {exc.message}")
            return None
        if run["info"].get("lifecycle_stage") == "deleted":
            self.summary.skip(label, f"its run {run_id} is deleted in MLflow")
            return None
        exp = self._ensure_experiment(run["info"]["experiment_id"])
        if exp is None:
            self.summary.skip(label, f"the experiment of its run {run_id} was skipped")
            return None
        self._import_run(run, exp)
        return pid

    def _version_artifact_path(self, mv: dict[str, Any], pid: str) -> str | None:
        """Where the version's files are in the imported run."""
        source = str(mv.get("source") or "")
        run_id = str(mv.get("run_id") or "")
        model_id = mv.get("model_id") or (
            source.removeprefix("models:/").split("/", 1)[0]
            if source.startswith("models:/m-")
            else None
        )
        if model_id:
            if self.dry_run and not self._podstack_run_done(pid)[1]:
                return f"<logged model {model_id}>"
            tags = self.client.get_run(pid).tags
            if MARK_LOGGED_MODEL + model_id in tags:
                return tags[MARK_LOGGED_MODEL + model_id]
            return None
        if source.startswith(f"runs:/{run_id}/"):
            return source.split("/", 2)[2].strip("/")
        # An artifact URI under the run's own artifact root.
        run_root = str(self.source.get_run(run_id)["info"].get("artifact_uri") or "")
        if run_root and source.startswith(run_root.rstrip("/") + "/"):
            return source[len(run_root.rstrip("/")) + 1 :].strip("/")
        return None

    def _import_model(self, rm: dict[str, Any], versions: list[dict[str, Any]]) -> None:
        name = rm["name"]
        mlabel = f"model {name!r}"
        try:
            current = self.client.get_registered_model(name)
        except NotFound:
            current = None
        labels, kv = [], []
        for k, v in _tags(rm.get("tags", [])).items():
            (labels if v == "" and _valid(_LABEL, k) else kv).append(k)
        for k in kv:
            self.summary.skip(
                f"{mlabel}: tag {k!r}",
                "registered-model tags with values are not in Podstack's REST API (labels only)",
            )
        if current is None:
            if self.dry_run:
                self.summary.planned.append(f"register {mlabel}")
            else:
                self.client.register_model(name, rm.get("description") or None, labels)
                self.summary.copied["registered models"] += 1
        else:
            self.summary.already["registered models"] += 1
        imported: dict[str, int] = {}
        if current is not None:
            for v in self.client.list_model_versions(name):
                if MARK_VERSION in v.tags:
                    imported[v.tags[MARK_VERSION]] = v.version
        for mv in versions:
            self._progress(f"{name} v{mv['version']}")
            number = self._import_version(name, mv, imported)
            if number is not None:
                imported[str(mv["version"])] = number
        self._copy_aliases(name, rm.get("aliases", []), imported, current is not None)

    def _import_version(
        self, name: str, mv: dict[str, Any], imported: dict[str, int]
    ) -> int | None:
        label = f"model {name!r} version {mv['version']}"
        if str(mv["version"]) in imported:
            self.summary.already["model versions"] += 1
            return imported[str(mv["version"])]
        if mv.get("status", "READY") != "READY":
            self.summary.skip(label, f"status {mv.get('status')} in MLflow (not READY)")
            return None
        run_id = mv.get("run_id")
        if not run_id:
            self.summary.skip(label, "no source run (a Podstack version always comes from a run)")
            return None
        if self.dry_run:
            self.summary.planned.append(f"copy {label} (from run {run_id})")
            return None
        pid = self._ensure_run_for_version(str(run_id), label)
        if pid is None:
            return None
        path = self._version_artifact_path(mv, pid)
        if path is None:
            self.summary.skip(
                label, f"its source {mv.get('source')!r} is not among run {run_id}'s artifacts"
            )
            return None
        tags = self._valid_tags(_tags(mv.get("tags", [])), label)
        tags[MARK_VERSION] = str(mv["version"])
        try:
            created = self.client.create_model_version(
                name, pid, path, description=mv.get("description") or None, tags=tags
            )
        except (NotFound, ValidationFailed, Conflict) as exc:
            self.summary.skip(label, exc.message)
            return None
        self.summary.copied["model versions"] += 1
        if created.version != int(mv["version"]):
            self.summary.skip(
                f"{label}: number",
                "Podstack numbers versions without gaps; the MLflow number is kept in tag "
                f"{MARK_VERSION}",
            )
        stage = mv.get("current_stage") or "None"
        if stage != "None":
            try:
                moved = self.client.transition_model_version_stage(name, created.version, stage)
            except (Conflict, ValidationFailed) as exc:
                self.summary.skip(f"{label}: stage {stage}", exc.message)
            else:
                if moved.pending_request is not None:
                    self.summary.skip(
                        f"{label}: stage {stage}",
                        "needs approval in Podstack; an approval request was opened",
                    )
                else:
                    self.summary.copied["stages"] += 1
        return created.version

    def _copy_aliases(
        self, name: str, aliases: list[dict[str, Any]], imported: dict[str, int], existed: bool
    ) -> None:
        have: dict[str, int] = {}
        if existed:
            have = {a.alias: a.version for a in self.client.list_model_aliases(name)}
        for a in aliases:
            alias, version = str(a["alias"]), str(a["version"])
            label = f"model {name!r} alias {alias!r}"
            target = imported.get(version)
            if target is not None and have.get(alias) == target:
                self.summary.already["aliases"] += 1
            elif self.dry_run:
                self.summary.planned.append(f"set {label} -> version {version}")
            elif target is None:
                self.summary.skip(label, f"its version {version} was not imported")
            else:
                try:
                    self.client.set_model_alias(name, alias, target)
                except PodstackError as exc:
                    if exc.status in (401, 403):
                        raise
                    self.summary.skip(label, exc.message)
                else:
                    self.summary.copied["aliases"] += 1
