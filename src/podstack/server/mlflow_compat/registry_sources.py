"""Where an MLflow model version's files come from, and where a client downloads them.

``create_model_version`` names its files by a ``source`` URI. Podstack registers a version
from a run's artifacts (the files become the version's immutable, content-addressed
snapshot, as for every version), so each accepted form is resolved to (run, path in run):

- ``runs:/<run id>/<path>``;
- ``mlflow-artifacts:/<experiment>/<run id>/artifacts/<path>`` (what ``mlflow.register_model``
  sends after finding the model among the run's artifacts), also as the
  ``http(s)://<server>/api/2.0/mlflow-artifacts/artifacts/…`` URL;
- ``models:/<logged model id>`` (MLflow 3 logged models; also the ``model_id`` field);
- ``models:/<name>/<version>`` and ``models:/<name>@<alias>``: another registered version's
  run artifacts.

Anything else (``file:``, ``s3:``, ``dbfs:`` …) names storage Podstack does not read and is
refused with the forms above. The download URI of a version is its run's proxied artifact
path, so the unmodified client downloads through ``/api/2.0/mlflow-artifacts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from sqlalchemy.orm import Session

from podstack.server.mlflow_compat import ids, logged_models
from podstack.server.mlflow_compat import repository as repo
from podstack.server.mlflow_compat.errors import MlflowError, invalid
from podstack.server.mlflow_compat.models import LoggedModel
from podstack.server.registry import lookup
from podstack.server.registry.filtered_search import Condition
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.server.tracking import service as tracking

FORMS = (
    "runs:/<run id>/<path>, mlflow-artifacts:/<experiment>/<run id>/artifacts/<path>, "
    "models:/<logged model id>, models:/<name>/<version>"
)
_ARTIFACTS_ROOT = "/api/2.0/mlflow-artifacts/artifacts/"


@dataclass(frozen=True)
class Where:
    run_id: str  # ours
    artifact_path: str
    logged_model_id: str | None = None


def _refuse(source: str, why: str) -> MlflowError:
    return invalid(
        f"Cannot register a version from source {source[:300]!r}: {why}. Podstack registers "
        f"a version from files it stores; use one of: {FORMS}."
    )


def _from_artifact_path(s: Session, source: str, path: str) -> Where:
    parsed = ids.parse_artifact_path(unquote(path))
    if parsed is None:
        raise _refuse(source, "it is not a run's artifact path (<experiment>/<run>/artifacts/…)")
    experiment_id, run_id, in_run = parsed
    run = tracking.get_run(s, run_id)
    if run.experiment_id != experiment_id:
        raise _refuse(
            source, f"run {ids.run_to_mlflow(run_id)} is not in experiment {experiment_id}"
        )
    return Where(run_id, in_run)


def _logged_model(s: Session, source: str, model_id: str) -> Where:
    run_id, path = logged_models.files_location(s, model_id)
    return Where(run_id, path, model_id)


def resolve_source(s: Session, source: str, run_id: str | None, model_id: str | None) -> Where:
    """(run, path in run) of the files a new version is made of; see the module docstring."""
    src = source.strip()
    parsed = urlparse(src)
    where: Where
    if parsed.scheme == "runs":
        run, _, path = src[len("runs:/") :].lstrip("/").partition("/")
        if not run:
            raise _refuse(source, "it names no run")
        where = Where(ids.run_from_mlflow(run), path.strip("/"))
    elif parsed.scheme == "mlflow-artifacts":
        where = _from_artifact_path(s, source, parsed.path)
    elif parsed.scheme in ("http", "https") and _ARTIFACTS_ROOT in parsed.path:
        where = _from_artifact_path(s, source, parsed.path.split(_ARTIFACTS_ROOT, 1)[1])
    elif parsed.scheme == "models":
        rest = src[len("models:/") :]
        if rest.startswith(ids.LOGGED_MODEL_PREFIX) and "/" not in rest and "@" not in rest:
            where = _logged_model(s, source, rest)
        else:
            _, mv = lookup.resolve_uri(s, src)
            where = Where(mv.source_run_id, mv.artifact_path)
    else:
        raise _refuse(source, f"the {parsed.scheme or 'plain path'!r} scheme is not readable here")
    if model_id and where.logged_model_id is None:
        # The client names the logged model beside a run source (MLflow 3 register_model).
        where = Where(where.run_id, where.artifact_path, model_id)
    if run_id and ids.run_from_mlflow(run_id) != where.run_id:
        raise invalid(
            f"run_id {run_id!r} does not match the run of source {source[:300]!r} "
            f"({ids.run_to_mlflow(where.run_id)})."
        )
    return where


def run_condition(c: Condition) -> Condition:
    """A ``run_id`` filter names MLflow run ids; the versions store ours."""
    if isinstance(c.value, tuple):
        return Condition(c.field, c.op, tuple(ids.run_from_mlflow(v) for v in c.value))
    if c.op in ("LIKE", "ILIKE"):
        return c
    return Condition(c.field, c.op, ids.run_from_mlflow(c.value))


def download_uri(s: Session, m: RegisteredModel, mv: ModelVersion) -> str:
    """The proxied artifact URI of the version's files: the location of the logged model
    whose directory they are, when there is one (the proxy shows a logged model's files only
    there, as MLflow 3 keeps model files outside the run; this covers versions registered
    through Podstack's SDK from such a directory too), else its run's artifacts at its path."""
    held = repo.search(
        s,
        experiment_ids=[],
        where=[
            LoggedModel.run_id == mv.source_run_id,
            LoggedModel.artifact_path == mv.artifact_path,
        ],
        order_by=[],
        limit=1,
        offset=0,
    )
    if held:
        return logged_models.artifact_uri(held[0])
    run = tracking.find_run(s, mv.source_run_id)
    if run is None:
        # The caller reads the model but not its source run's experiment (permissions).
        return f"runs:/{ids.run_to_mlflow(mv.source_run_id)}/{mv.artifact_path}"
    base = ids.run_artifact_uri(run.experiment_id, run.id)
    return f"{base}/{mv.artifact_path}" if mv.artifact_path else base
