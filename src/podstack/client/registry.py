"""SDK: the model registry (models, versions, stages, aliases, tags, download, compare,
lineage).

Wherever a method takes a ``version`` it also accepts a ``models:/`` reference
(``models:/name/3``, ``models:/name@alias``, ``models:/name/Production``,
``models:/name/latest``), resolved by the server. The reference must name ``model_name``;
``model_name`` may itself be the reference when ``version`` is ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from podstack.client.base import BaseClient, PagedList, seg, wire_float
from podstack.client.transfer import PROGRESS_THRESHOLD, TransferProgress, download_to
from podstack.errors import NotFound
from podstack.schemas import registry as sch
from podstack.schemas.artifact_paths import safe_join, validate_artifact_path

VersionRef = int | str | sch.ModelVersion | None


def _model_path(name: str) -> str:
    return f"/registered-models/{seg(name)}"


def _when(at: datetime | str | None) -> str | None:
    if at is None or isinstance(at, str):
        return at
    # A naive datetime means the caller's local time.
    return (at if at.tzinfo is not None else at.astimezone()).isoformat()


def _labels(tags: Iterable[str] | None) -> Any:
    if tags is None:
        return []
    if isinstance(tags, (list, tuple, set, frozenset)):
        return [str(t) for t in tags]
    return tags  # the server explains what is wrong with it


def _str_values(tags: Any) -> Any:
    if tags is None:
        return {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return tags  # not key/value: the server answers with a clear 422


class RegistryAPI(BaseClient):
    # ------------------------------------------------------------ references

    def resolve_model_uri(self, uri: str, model_name: str | None = None) -> sch.ModelVersion:
        """The version a ``models:/`` reference points at now."""
        params = {"uri": uri, "model_name": model_name}
        return sch.ModelVersion.model_validate(
            self._request("GET", "/model-versions/resolve", params=params)
        )

    def _ref(self, model_name: str, version: VersionRef) -> tuple[str, Any]:
        """(model name, version number) for any accepted way of naming a version."""
        if isinstance(version, sch.ModelVersion):
            return version.model_name, version.version
        if version is None and isinstance(model_name, str) and model_name.startswith("models:/"):
            mv = self.resolve_model_uri(model_name)
            return mv.model_name, mv.version
        if isinstance(version, str) and version.startswith("models:/"):
            mv = self.resolve_model_uri(version, model_name=model_name)
            return mv.model_name, mv.version
        # Anything else goes to the server as-is; it explains invalid version numbers.
        return model_name, version

    def _version_path(self, model_name: str, version: VersionRef) -> str:
        name, number = self._ref(model_name, version)
        return f"{_model_path(name)}/versions/{seg(number)}"

    # ------------------------------------------------------------ registered models

    def register_model(
        self, name: str, description: str | None = None, tags: Iterable[str] | None = None
    ) -> sch.RegisteredModel:
        """Registers a model. ``tags`` are labels (e.g. ``["nlp", "sentiment"]``)."""
        body = {"name": name, "description": description, "tags": _labels(tags)}
        return sch.RegisteredModel.model_validate(
            self._request("POST", "/registered-models", json=body)
        )

    def get_registered_model(self, name: str) -> sch.RegisteredModel:
        return sch.RegisteredModel.model_validate(self._request("GET", _model_path(name)))

    def search_registered_models(
        self,
        query: str | None = None,
        stage: str | None = None,
        labels: Sequence[str] | None = None,
        order_by: str = "name",
        max_results: int = 100,
        page_token: str | None = None,
    ) -> PagedList:
        """One page of models (``result.next_page_token`` fetches the next). ``query``
        matches name or description; ``stage``: has a version in it; ``labels``: has all."""
        params: dict[str, Any] = {
            "q": query,
            "stage": stage,
            "label": list(labels or []),
            "order_by": order_by,
            "limit": max_results,
            "page_token": page_token,
        }
        page = self._request("GET", "/registered-models", params=params)
        out = PagedList(sch.RegisteredModel.model_validate(m) for m in page["items"])
        out.next_page_token = page.get("next_page_token")
        return out

    def list_registered_models(
        self,
        query: str | None = None,
        stage: str | None = None,
        labels: Sequence[str] | None = None,
        order_by: str = "name",
        max_results: int | None = None,
    ) -> list[sch.RegisteredModel]:
        """Every matching model (follows pages), or the first ``max_results``."""
        params: dict[str, Any] = {
            "q": query,
            "stage": stage,
            "label": list(labels or []),
            "order_by": order_by,
            "limit": 1000 if max_results is None else min(max(max_results, 1), 1000),
        }
        return [
            sch.RegisteredModel.model_validate(m)
            for m in self._paginate("/registered-models", "items", params, max_results)
        ]

    def update_registered_model(
        self, name: str, description: str | None = None, tags: Iterable[str] | None = None
    ) -> sch.RegisteredModel:
        """Changes what is given: the description, and/or the labels (replaced)."""
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if tags is not None:
            body["tags"] = _labels(tags)
        return sch.RegisteredModel.model_validate(
            self._request("PATCH", _model_path(name), json=body)
        )

    def delete_registered_model(self, name: str) -> None:
        """Deletes the model with all its versions, aliases and tags (refused while a
        version is in Production)."""
        self._request("DELETE", _model_path(name))

    def get_model_history(self, model_name: str) -> list[sch.HistoryEntry]:
        """Stage transitions and alias moves of every version, newest first."""
        return [
            sch.HistoryEntry.model_validate(e)
            for e in self._paginate(f"{_model_path(model_name)}/history", "items", {"limit": 1000})
        ]

    # ------------------------------------------------------------ versions

    def create_model_version(
        self,
        model_name: str,
        source_run_id: str,
        artifact_path: str,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        parent: str | sch.ModelVersion | tuple[str, int] | None = None,
        detail: bool = False,
    ) -> sch.ModelVersion:
        """Registers ``artifact_path`` (a file or directory) of run ``source_run_id`` as the
        next version of ``model_name`` (registering the model if needed). ``tags`` are
        key/value; ``parent`` is the version it was fine-tuned from.

        Returns the lean version (no ``files``, no ``source_run``) unless ``detail=True``;
        ``get_model_version`` always has both."""
        if isinstance(parent, sch.ModelVersion):
            parent = parent.uri
        elif isinstance(parent, tuple):
            parent = f"models:/{parent[0]}/{parent[1]}"
        body = {
            "source_run_id": source_run_id,
            "artifact_path": artifact_path,
            "description": description,
            "tags": _str_values(tags),
            "parent": parent,
        }
        return sch.ModelVersion.model_validate(
            self._request(
                "POST",
                f"{_model_path(model_name)}/versions",
                json=body,
                params={"detail": "true"} if detail else None,
            )
        )

    def get_model_version(self, model_name: str, version: VersionRef = None) -> sch.ModelVersion:
        """The version with its files, source run params and metrics, validation metrics."""
        return sch.ModelVersion.model_validate(
            self._request("GET", self._version_path(model_name, version))
        )

    def list_model_versions(
        self, model_name: str, stage: str | None = None, max_results: int | None = None
    ) -> list[sch.ModelVersion]:
        """Versions, newest first (optionally only those in ``stage``)."""
        params = {"stage": stage, "limit": 1000}
        return [
            sch.ModelVersion.model_validate(v)
            for v in self._paginate(
                f"{_model_path(model_name)}/versions", "items", params, max_results
            )
        ]

    def update_model_version(
        self, model_name: str, version: VersionRef, description: str | None = None
    ) -> sch.ModelVersion:
        body = {} if description is None else {"description": description}
        return sch.ModelVersion.model_validate(
            self._request("PATCH", self._version_path(model_name, version), json=body)
        )

    def delete_model_version(self, model_name: str, version: VersionRef) -> None:
        """Refused for a Production version (archive it first)."""
        self._request("DELETE", self._version_path(model_name, version))

    def transition_model_version_stage(
        self,
        model_name: str,
        version: VersionRef,
        stage: str,
        note: str | None = None,
        archive_existing: bool = False,
    ) -> sch.ModelVersion:
        """Moves the version to None, Staging, Production or Archived (any case).
        ``archive_existing`` archives the versions already in that stage. If the change
        needs approval, nothing moves and the result's ``pending_request`` says so."""
        body = {"stage": stage, "note": note, "archive_existing": archive_existing}
        return sch.ModelVersion.model_validate(
            self._request("POST", self._version_path(model_name, version) + "/stage", json=body)
        )

    def get_model_version_stage_history(
        self, model_name: str, version: VersionRef
    ) -> list[sch.StageTransition]:
        rows = self._request("GET", self._version_path(model_name, version) + "/transitions")
        return [sch.StageTransition.model_validate(r) for r in rows]

    def get_model_version_by_stage(
        self, model_name: str, stage: str, at: datetime | str | None = None
    ) -> sch.ModelVersion:
        """The version in ``stage`` (the one moved there last), now or at date ``at``."""
        path = f"{_model_path(model_name)}/stages/{seg(stage)}"
        return sch.ModelVersion.model_validate(self._request("GET", path, params={"at": _when(at)}))

    def set_model_version_tag(
        self, model_name: str, version: VersionRef, key: str, value: Any
    ) -> None:
        body = {"key": key, "value": str(value)}
        self._request("POST", self._version_path(model_name, version) + "/tags", json=body)

    def delete_model_version_tag(self, model_name: str, version: VersionRef, key: str) -> None:
        path = self._version_path(model_name, version) + "/tags/" + seg(key)
        self._request("DELETE", path)

    def log_model_version_metrics(
        self, model_name: str, version: VersionRef, metrics: Mapping[str, float]
    ) -> sch.ModelVersion:
        """Validation metrics of the version itself (a key logged again is replaced)."""
        body = {"metrics": {k: wire_float(v) for k, v in metrics.items()}}
        return sch.ModelVersion.model_validate(
            self._request("POST", self._version_path(model_name, version) + "/metrics", json=body)
        )

    def list_model_version_files(
        self, model_name: str, version: VersionRef
    ) -> list[sch.VersionFile]:
        rows = self._request("GET", self._version_path(model_name, version) + "/files")
        return [sch.VersionFile.model_validate(r) for r in rows]

    def download_model_version(
        self,
        model_name: str,
        version: VersionRef,
        destination: str | os.PathLike[str] = ".",
        paths: Sequence[str] | None = None,
    ) -> str:
        """Downloads the version's files (or only ``paths``: files or directories of it)
        into ``destination``, streamed and sha256-verified; files already present with the
        right content are skipped, and an interrupted download leaves no partial file under
        its real name. Returns the destination directory."""
        base = self._version_path(model_name, version)
        files = [sch.VersionFile.model_validate(r) for r in self._request("GET", base + "/files")]
        if paths is not None:
            files = _select(files, paths)
        dest = Path(destination)
        # Resolve every target first: a hostile listing writes nothing anywhere.
        targets = [(f, safe_join(dest, f.path)) for f in files]
        total = sum(f.size for f in files)
        with TransferProgress() as bars:
            overall = (
                bars.task(f"Downloading {len(files)} files", total)
                if len(files) > 1 and total >= PROGRESS_THRESHOLD
                else None
            )
            for f, target in targets:
                rel = "/".join(seg(p) for p in f.path.split("/"))
                download_to(
                    self,
                    base + "/files/" + rel,
                    target,
                    expected_sha256=f.sha256,
                    size=f.size,
                    progress=bars,
                    grant_path=base + "/downloads/" + rel,  # presigned URL or the route above
                )
                if overall is not None:
                    overall(f.size)
        return str(dest)

    # ------------------------------------------------------------ aliases

    def set_model_alias(self, model_name: str, alias: str, version: int | str) -> sch.ModelAlias:
        """Points ``alias`` at ``version`` (a number, or a ``models:/`` URI of this model)."""
        return sch.ModelAlias.model_validate(
            self._request(
                "PUT",
                f"{_model_path(model_name)}/aliases/{seg(alias)}",
                json={"version": version},
            )
        )

    def delete_model_alias(self, model_name: str, alias: str) -> None:
        self._request("DELETE", f"{_model_path(model_name)}/aliases/{seg(alias)}")

    def list_model_aliases(self, model_name: str) -> list[sch.ModelAlias]:
        rows = self._request("GET", f"{_model_path(model_name)}/aliases")
        return [sch.ModelAlias.model_validate(r) for r in rows]

    def get_model_by_alias(
        self,
        model_name: str,
        alias: str,
        at: datetime | str | None = None,
        detail: bool = False,
    ) -> sch.ModelVersion:
        """The version ``alias`` points at (``latest`` and ``v<N>`` always work), now or as
        of date ``at`` (a naive datetime is local time).

        The lean version (tags, validation metrics, aliases; no ``files``, no
        ``source_run``) unless ``detail=True``; ``get_model_version`` always has both."""
        return sch.ModelVersion.model_validate(
            self._request(
                "GET",
                f"{_model_path(model_name)}/aliases/{seg(alias)}",
                params={"at": _when(at), "detail": "true" if detail else None},
            )
        )

    def rollback_model_alias(self, model_name: str, alias: str) -> sch.ModelAlias:
        """Moves ``alias`` back to the version it pointed at before (repeatable)."""
        return sch.ModelAlias.model_validate(
            self._request("POST", f"{_model_path(model_name)}/aliases/{seg(alias)}/rollback")
        )

    # ------------------------------------------------------------ compare and lineage

    def compare_model_versions(
        self,
        model_name: str,
        versions: Sequence[int | str],
        higher_is_better: Mapping[str, bool] | None = None,
        max_points: int = 500,
    ) -> sch.VersionComparison:
        """Metrics side by side (differences from the first version, best per metric),
        changed and unchanged params, and metric histories for charts. Whether larger is
        better is read from the metric name (loss, error, mse, latency… are smaller-is-better);
        ``higher_is_better={"my_score": False}`` overrides it."""
        overrides = dict(higher_is_better or {})
        params = {
            "versions": ",".join(str(v) for v in versions),
            "higher_is_better": [k for k, v in overrides.items() if v],
            "lower_is_better": [k for k, v in overrides.items() if not v],
            "max_points": max_points,
        }
        return sch.VersionComparison.model_validate(
            self._request("GET", f"{_model_path(model_name)}/compare", params=params)
        )

    def get_model_version_lineage(
        self, model_name: str, version: VersionRef = None
    ) -> sch.LineageGraph:
        return sch.LineageGraph.model_validate(
            self._request("GET", self._version_path(model_name, version) + "/lineage")
        )


def _select(files: list[sch.VersionFile], paths: Sequence[str]) -> list[sch.VersionFile]:
    """The files named by ``paths`` (each a file, or a directory meaning all files in it)."""
    if isinstance(paths, str):
        paths = [paths]
    chosen: dict[str, sch.VersionFile] = {}
    for p in paths:
        prefix = validate_artifact_path(p, directory=True)
        hits = [
            f for f in files if not prefix or f.path == prefix or f.path.startswith(prefix + "/")
        ]
        if not hits:
            available = ", ".join(repr(f.path) for f in files[:10])
            raise NotFound(
                f"This model version has no file or directory {p!r}. Its files: {available}.",
                {"path": p, "available": [f.path for f in files[:10]]},
            )
        for f in hits:
            chosen[f.path] = f
    return sorted(chosen.values(), key=lambda f: f.path)
