"""Schedules through the SDK, on both backends (embedded and a live server)."""

from __future__ import annotations

import pytest

from podstack import MLOpsClient
from podstack.errors import Conflict, NotFound, ValidationFailed
from podstack.schemas.schedules import Execution, Schedule


def test_schedule_lifecycle(client: MLOpsClient) -> None:
    client.create_experiment("sentiment-exp")
    s = client.create_schedule(
        name="nightly-train",
        experiment_id="sentiment-exp",
        cron="0 2 * * *",
        config={"lr": 0.001, "epochs": 10},
        command=["python", "train.py"],
        timezone="America/New_York",
        timeout_seconds=3600,
    )
    assert isinstance(s, Schedule)
    assert s.cron_description == "At 02:00 every day" and s.timezone == "America/New_York"
    assert s.executor.type == "local" and s.executor.command == ["python", "train.py"]
    assert len(s.next_fire_times) == 5
    assert client.get_schedule("nightly-train").id == s.id
    assert [x.name for x in client.list_schedules()] == ["nightly-train"]

    paused = client.pause_schedule("nightly-train")
    assert paused.paused and paused.next_fire_at is None
    resumed = client.resume_schedule(s.id)
    assert not resumed.paused and resumed.next_fire_at is not None

    edited = client.update_schedule(
        "nightly-train", cron="@hourly", config={"lr": 0.01}, timeout_seconds=None
    )
    assert (edited.version, edited.cron, edited.config, edited.timeout_seconds) == (
        2,
        "@hourly",
        {"lr": 0.01},
        None,
    )

    ex = client.trigger_schedule("nightly-train")
    assert isinstance(ex, Execution) and ex.status == "queued" and ex.trigger == "manual"
    (listed,) = client.list_schedule_executions("nightly-train")
    assert listed.id == ex.id
    cancelled = client.cancel_execution(ex.id)
    assert cancelled.status == "cancelled"
    assert client.get_schedule_execution(ex.id).status == "cancelled"

    client.delete_schedule("nightly-train")
    assert client.list_schedules() == []
    assert client.get_schedule(s.id).deleted
    assert len(client.list_schedule_executions(s.id)) == 1

    preview = client.describe_cron("30 1 * * 1-5", count=2)
    assert preview.description == "At 01:30, Monday through Friday"
    assert len(preview.next_fire_times) == 2


def test_errors_are_typed(client: MLOpsClient) -> None:
    client.create_experiment("e")
    with pytest.raises(ValidationFailed, match="not one shell string"):
        client.create_schedule("s", "e", "0 2 * * *", command="python train.py")  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="hour"):
        client.create_schedule("s", "e", "0 99 * * *", command=["true"])
    with pytest.raises(ValidationFailed, match="timezone"):
        client.create_schedule("s", "e", "0 2 * * *", command=["true"], timezone="Moon/Base")
    client.create_schedule("s", "e", "0 2 * * *", command=["true"])
    with pytest.raises(Conflict):
        client.create_schedule("s", "e", "0 3 * * *", command=["true"])
    with pytest.raises(NotFound):
        client.pause_schedule("missing")
    with pytest.raises(TypeError):
        client.create_schedule("t", "e", "@daily", command=["x"], executor={"type": "webhook"})
