"""Tracking through the SDK, on both backends (embedded and a live server)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from podstack import MLOpsClient
from podstack.errors import Conflict, NotFound, ValidationFailed


def test_start_run_creates_experiment_by_name_and_finishes(client: MLOpsClient) -> None:
    with client.start_run(experiment_id="sentiment-exp") as run:
        run.log_params({"lr": 0.001, "epochs": 10})
        run.log_metrics({"accuracy": 0.94, "f1": 0.92})
        run_id = run.id
    assert run_id.startswith("run-")
    got = client.get_run(run_id)
    assert got.status == "FINISHED"
    assert got.end_time is not None
    assert got.params == {"lr": "0.001", "epochs": "10"}
    assert got.metrics == {"accuracy": 0.94, "f1": 0.92}
    exp = client.get_experiment("sentiment-exp")
    assert exp.name == "sentiment-exp" and exp.id == got.experiment_id
    # A second run reuses the same experiment rather than creating another.
    with client.start_run(experiment_id="sentiment-exp") as run2:
        pass
    assert client.get_run(run2.id).experiment_id == exp.id


def test_exception_marks_run_failed_and_propagates(client: MLOpsClient) -> None:
    with pytest.raises(RuntimeError, match="boom"), client.start_run("exp-fail") as run:
        raise RuntimeError("boom")
    assert client.get_run(run.id).status == "FAILED"


def test_metric_history_and_special_values(client: MLOpsClient) -> None:
    with client.start_run("hist") as run:
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        run.log_metrics({"weird": math.nan}, step=0)
        run.log_metrics({"weird": math.inf}, step=1)
        run.log_metrics({"weird": -math.inf}, step=2)
    hist = client.get_metric_history(run.id, "loss")
    assert [p.step for p in hist] == [0, 1, 2, 3, 4]
    assert hist[-1].value == pytest.approx(0.2)
    weird = client.get_metric_history(run.id, "weird")
    assert math.isnan(weird[0].value)
    assert weird[1].value == math.inf and weird[2].value == -math.inf
    summary = client.get_run(run.id).metrics
    assert summary["loss"] == pytest.approx(0.2)
    assert summary["weird"] == -math.inf  # latest = highest step


def test_log_metric_points_round_trip(client: MLOpsClient) -> None:
    """A whole history in one call (the W1 benchmark's path): values incl. NaN/inf, steps and
    explicit timestamps read back exactly."""
    plus1 = timezone(timedelta(hours=1))
    stamp = datetime(2024, 3, 1, 12, 0, 0, 250001, tzinfo=plus1)
    special = [math.nan, math.inf, -math.inf]
    points: list[dict[str, Any]] = [
        {"key": f"k{k}", "value": s / 7 + k, "step": s} for s in range(100) for k in range(3)
    ]
    points += [{"key": "special", "value": v, "step": i} for i, v in enumerate(special)]
    points.append({"key": "stamped", "value": 1.0, "step": 5, "timestamp": stamp})
    with client.start_run("points") as run:
        client.log_metric_points(run.id, points)
    hist = client.get_metric_history(run.id, "k2")
    assert [(p.step, p.value) for p in hist] == [(s, s / 7 + 2) for s in range(100)]
    got = [p.value for p in client.get_metric_history(run.id, "special")]
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf]
    (stamped,) = client.get_metric_history(run.id, "stamped")
    assert stamped.timestamp == stamp and stamped.step == 5
    summary = client.get_run(run.id).metrics
    assert summary["k1"] == 99 / 7 + 1 and summary["special"] == -math.inf


def test_log_metric_points_bad_key_is_rejected_whole(client: MLOpsClient) -> None:
    run = client.create_run("points-bad")
    with pytest.raises(ValidationFailed, match=r"points\.1\.key"):
        client.log_metric_points(run.id, [{"key": "a", "value": 1.0}, {"key": "a b!", "value": 2}])
    assert client.get_run(run.id).metrics == {}


def test_latest_metric_is_highest_step_not_last_logged(client: MLOpsClient) -> None:
    with client.start_run("order") as run:
        run.log_metrics({"acc": 0.9}, step=10)
        run.log_metrics({"acc": 0.5}, step=3)  # late backfill of an earlier step
    assert client.get_run(run.id).metrics["acc"] == 0.9


def test_param_is_immutable(client: MLOpsClient) -> None:
    with client.start_run("params") as run:
        run.log_params({"lr": 0.1})
        run.log_params({"lr": 0.1})  # same value: fine
        with pytest.raises(Conflict) as err:
            run.log_params({"lr": 0.2, "batch": 32})
        assert "lr" in err.value.message
    # Nothing of the refused batch was written.
    assert client.get_run(run.id).params == {"lr": "0.1"}


def test_logging_to_finished_run_is_conflict(client: MLOpsClient) -> None:
    with client.start_run("done") as run:
        pass
    with pytest.raises(Conflict, match="FINISHED"):
        run.log_metrics({"x": 1.0})
    with pytest.raises(Conflict):
        run.log_params({"a": 1})
    assert client.get_run(run.id).metrics == {}


def test_unknown_run_and_experiment(client: MLOpsClient) -> None:
    with pytest.raises(NotFound, match="run-doesnotexist"):
        client.get_run("run-doesnotexist")
    with pytest.raises(NotFound):
        client.get_experiment("no-such-exp")
    with pytest.raises(NotFound):
        client.log_metrics("run-doesnotexist", {"a": 1.0})


def test_tags_datasets_and_search(client: MLOpsClient) -> None:
    ids = []
    for i, (lr, acc) in enumerate([(0.1, 0.7), (0.01, 0.9), (0.001, 0.95)]):
        with client.start_run("search-exp", run_name=f"r{i}", tags={"team": "nlp"}) as run:
            run.log_params({"lr": lr})
            run.log_metrics({"accuracy": acc})
            run.set_tag("phase", "dev" if i < 2 else "final")
            run.log_dataset(
                "reviews", source_uri="s3://data/reviews.csv", digest="abc123", context="training"
            )
            ids.append(run.id)
    got = client.get_run(ids[0])
    assert got.tags == {"team": "nlp", "phase": "dev"}
    assert got.datasets[0].name == "reviews" and got.datasets[0].context == "training"

    best = client.search_runs(
        "search-exp", filter="metrics.accuracy >= 0.9", order_by="metrics.accuracy DESC"
    )
    assert [r.id for r in best] == [ids[2], ids[1]]
    by_param = client.search_runs("search-exp", filter="params.lr = '0.01'")
    assert [r.id for r in by_param] == [ids[1]]
    by_tag = client.search_runs(
        "search-exp", filter="tags.phase = 'final' and attributes.status = 'FINISHED'"
    )
    assert [r.id for r in by_tag] == [ids[2]]
    # Pagination walks all runs exactly once.
    seen, token = [], None
    while True:
        page = client.search_runs(
            "search-exp", max_results=2, page_token=token, order_by="metrics.accuracy ASC"
        )
        seen += [r.id for r in page]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids


def test_search_filter_errors(client: MLOpsClient) -> None:
    with pytest.raises(ValidationFailed, match="prefix"):
        client.search_runs(filter="foo.bar = 1")
    with pytest.raises(ValidationFailed, match="number"):
        client.search_runs(filter="metrics.acc > 'high'")
    with pytest.raises(ValidationFailed):
        client.search_runs(filter="metrics.acc >")


def test_experiment_crud(client: MLOpsClient) -> None:
    exp = client.create_experiment("churn", description="Churn models", tags={"team": "growth"})
    with pytest.raises(Conflict):
        client.create_experiment("churn")
    client.update_experiment(exp.id, description="Churn v2")
    assert client.get_experiment("churn").description == "Churn v2"
    client.archive_experiment("churn")
    assert "churn" not in [e.name for e in client.list_experiments()]
    assert "churn" in [e.name for e in client.list_experiments(include_archived=True)]
    with pytest.raises(Conflict, match="archived"):
        client.start_run("churn")
    client.delete_experiment(exp.id)
    with pytest.raises(NotFound):
        client.get_experiment(exp.id)
