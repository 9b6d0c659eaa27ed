"""Ids and URIs as the MLflow client sees them, both ways, without a lookup table.

Runs. Ours are ``run-<16 hex>``; MLflow's are 32 hex characters. The MLflow id of one of ours
is 16 zeros followed by its 16 hex (``run-1a2b…`` -> ``00000000000000001a2b…``), and back.
A 32-hex id that does not start with 16 zeros (a run copied from an MLflow server by
``podstack import mlflow``) is stored here as ``run-<those 32 hex>`` and shown to MLflow as
the 32 hex again, so imported runs keep their MLflow ids. Our own ``run-…`` form is also
accepted wherever MLflow sends a run id (a user pasting an id from the Podstack UI).

Experiments. MLflow experiment ids are opaque strings (the client checks
``^[a-zA-Z0-9][\\w\\-]{0,63}$``), so ours (``exp-<16 hex>``) are shown unchanged. MLflow's
default experiment, ``"0"`` (where runs go when no experiment was set), is a Podstack
experiment whose id is literally ``"0"``, named ``Default``, created on first use.

Logged models (MLflow 3) have ids ``m-<32 hex>`` (``LOGGED_MODEL_PREFIX``), kept as is.

Artifact URIs use MLflow's proxied scheme, so the unmodified client uploads and downloads
through ``/api/2.0/mlflow-artifacts``: a run's ``artifact_uri`` is
``mlflow-artifacts:/<experiment id>/<mlflow run id>/artifacts``; an experiment's
``artifact_location`` is ``mlflow-artifacts:/<experiment id>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
ARTIFACT_SCHEME = "mlflow-artifacts:"
LOGGED_MODEL_PREFIX = "m-"

_PAD = "0" * 16
_OURS = re.compile(r"^run-([0-9a-f]{16}|[0-9a-f]{32})$")
_MLFLOW = re.compile(r"^[0-9a-f]{32}$")


def run_to_mlflow(run_id: str) -> str:
    """Our run id -> the id the MLflow client sees."""
    m = _OURS.match(run_id)
    if m is None:
        return run_id  # not a form we mint; shown as stored
    hexpart = m.group(1)
    return _PAD + hexpart if len(hexpart) == 16 else hexpart


def run_from_mlflow(mlflow_id: str) -> str:
    """An MLflow run id (or one of ours) -> our run id. Lower-cases hex, as MLflow does."""
    value = mlflow_id.strip()
    low = value.lower()
    if _MLFLOW.match(low):
        return "run-" + (low[16:] if low.startswith(_PAD) else low)
    return value


def runs_to_mlflow(_s: Any, run_ids: Sequence[str]) -> dict[str, str]:
    """Batch form (``registry_views.RunIdMapper``): the mapping needs no database."""
    return {r: run_to_mlflow(r) for r in run_ids}


def experiment_to_mlflow(experiment_id: str) -> str:
    return experiment_id


def experiment_from_mlflow(mlflow_id: str) -> str:
    return mlflow_id.strip()


def experiment_artifact_location(experiment_id: str) -> str:
    return f"{ARTIFACT_SCHEME}/{experiment_to_mlflow(experiment_id)}"


def run_artifact_uri(experiment_id: str, run_id: str) -> str:
    return (
        f"{ARTIFACT_SCHEME}/{experiment_to_mlflow(experiment_id)}/{run_to_mlflow(run_id)}/artifacts"
    )


def parse_artifact_path(path: str) -> tuple[str, str, str] | None:
    """``<experiment>/<mlflow run id>/artifacts[/<path in run>]`` (a proxied artifact path, or
    the part of a ``mlflow-artifacts:/`` URI after the scheme) -> (our experiment id, our run
    id, path inside the run, "" for its root); None for anything else."""
    parts = [p for p in path.strip("/").split("/")]
    if len(parts) < 3 or parts[2] != "artifacts" or not parts[0] or not parts[1]:
        return None
    return experiment_from_mlflow(parts[0]), run_from_mlflow(parts[1]), "/".join(parts[3:])


def parse_model_artifact_path(path: str) -> tuple[str, str, str] | None:
    """``<experiment>/models/<logged model id>/artifacts[/<path>]`` (a logged model's
    ``artifact_uri`` form) -> (our experiment id, model id, path inside the model); None for
    anything else."""
    parts = path.strip("/").split("/")
    if (
        len(parts) < 4
        or parts[1] != "models"
        or not parts[2].startswith(LOGGED_MODEL_PREFIX)
        or parts[3] != "artifacts"
    ):
        return None
    return experiment_from_mlflow(parts[0]), parts[2], "/".join(parts[4:])
