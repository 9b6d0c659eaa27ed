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

The experiment and run copy (and the marks and validators both halves use) is in
mlflow_run_import.py; this module holds the selection, the order of the import and the
model registry copy.
"""

from __future__ import annotations

import shutil
from typing import Any

from pydantic import TypeAdapter

from podstack.errors import Conflict, NotFound, PodstackError, ValidationFailed
from podstack.importers.mlflow_run_import import (
    MARK_LOGGED_MODEL,
    RunImporter,
    Summary,
    is_valid,
    tag_dict,
)
from podstack.importers.mlflow_source import MlflowSourceError
from podstack.schemas.common import Label

MARK_VERSION = "mlflow.import.version"
# Registered-model labels: like the run importer's validators, our wire schema's own.
_LABEL = TypeAdapter(Label)

NOT_MODELLED = (
    "Not copied (not modelled by Podstack): traces, prompts, evaluation datasets, logged "
    "models' own params and metrics, creation times of experiments, models and versions."
)


class MlflowImporter(RunImporter):
    """One import: ``run()`` returns the summary (also filled in as it goes, so a caller
    can show what was done before a failure)."""

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
        for k, v in tag_dict(rm.get("tags", [])).items():
            (labels if v == "" and is_valid(_LABEL, k) else kv).append(k)
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
        tags = self._valid_tags(tag_dict(mv.get("tags", [])), label)
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
