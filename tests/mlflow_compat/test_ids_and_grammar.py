"""The id mapping and MLflow's filter grammar, as pure functions (no server, no database)."""

from __future__ import annotations

import pytest

from podstack.server.mlflow_compat import ids
from podstack.server.mlflow_compat.errors import MlflowError
from podstack.server.mlflow_compat.search import Cond, Order, parse_filter, parse_order_by

pytestmark = pytest.mark.one_db


def test_run_ids_map_both_ways_stably() -> None:
    ours = "run-1a2b3c4d5e6f7081"
    mlflow_id = ids.run_to_mlflow(ours)
    assert mlflow_id == "0" * 16 + "1a2b3c4d5e6f7081" and len(mlflow_id) == 32
    assert ids.run_from_mlflow(mlflow_id) == ours
    assert ids.run_from_mlflow(mlflow_id.upper()) == ours
    # An imported MLflow run keeps its MLflow id.
    imported = "9f" * 16
    assert ids.run_from_mlflow(imported) == f"run-{imported}"
    assert ids.run_to_mlflow(f"run-{imported}") == imported
    # Our own form is accepted where MLflow sends a run id.
    assert ids.run_from_mlflow(ours) == ours


def test_artifact_uris_parse_back() -> None:
    uri = ids.run_artifact_uri("exp-00aa", "run-1a2b3c4d5e6f7081")
    assert uri == "mlflow-artifacts:/exp-00aa/00000000000000001a2b3c4d5e6f7081/artifacts"
    tail = uri.removeprefix("mlflow-artifacts:/")
    assert ids.parse_artifact_path(tail + "/model/MLmodel") == (
        "exp-00aa",
        "run-1a2b3c4d5e6f7081",
        "model/MLmodel",
    )
    assert ids.parse_artifact_path("exp-00aa/x") is None
    assert ids.parse_model_artifact_path("0/models/m-" + "a" * 32 + "/artifacts/MLmodel") == (
        "0",
        "m-" + "a" * 32,
        "MLmodel",
    )


def test_filter_grammar_features() -> None:
    conds = parse_filter(
        "metrics.acc > 0.9 and params.lr = '0.01' AND tags.team = \"nlp\" "
        "and attributes.status IN ('FINISHED', 'FAILED') and tags.`my key` ILIKE '%Nl_' "
        "and run_name LIKE 'bert%' and params.opt IS NOT NULL and metrics.\"val loss\" <= 1e-3 "
        "and attributes.run_id NOT IN ('a') and datasets.name = 'train'"
    )
    assert conds == [
        Cond("metric", "acc", ">", 0.9),
        Cond("param", "lr", "=", "0.01"),
        Cond("tag", "team", "=", "nlp"),
        Cond("attribute", "status", "IN", ("FINISHED", "FAILED")),
        Cond("tag", "my key", "ILIKE", "%Nl_"),
        Cond("attribute", "run_name", "LIKE", "bert%"),
        Cond("param", "opt", "IS NOT NULL", None),
        Cond("metric", "val loss", "<=", 0.001),
        Cond("attribute", "run_id", "NOT IN", ("a",)),
        Cond("dataset", "name", "=", "train"),
    ]
    assert parse_order_by(["metrics.acc DESC", "params.lr", "start_time asc"]) == [
        Order("metric", "acc", True),
        Order("param", "lr", False),
        Order("attribute", "start_time", False),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metrics.acc > 'high'", "must be compared with a number"),
        ("params.lr > '1'", "is a string"),
        ("foo.bar = '1'", "unknown identifier prefix"),
        ("attributes.colour = 'red'", "unknown run attribute"),
        ("metrics.acc > 0.9 or metrics.acc < 0.1", "join conditions with AND"),
        ("metrics.acc IN (1, 2)", "is for strings"),
        ("params.lr = '1' and", "incomplete"),
        ("tags.team LIKE nlp", "needs a quoted pattern"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(MlflowError) as err:
        parse_filter(text)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert fragment in err.value.message


def test_experiment_filters_take_attributes_and_tags_only() -> None:
    assert parse_filter("name LIKE 'exp%' and tags.team = 'a'", experiments=True) == [
        Cond("attribute", "name", "LIKE", "exp%"),
        Cond("tag", "team", "=", "a"),
    ]
    with pytest.raises(MlflowError, match="attributes and tags only"):
        parse_filter("metrics.acc > 1", experiments=True)
