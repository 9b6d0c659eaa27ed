"""Schedules over REST: wire shapes, lifecycle, and every bad input (clear 4xx, nothing
changed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from tests.http_errors import api_error as _error

MakeToken = Callable[..., str]
ClientFor = Callable[[str], httpx.Client]
LOCAL = {"command": ["python", "train.py", "--epochs", "3"]}


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "nightly-train",
        "experiment_id": "sentiment-exp",
        "cron": "0 2 * * *",
        "config": {"lr": 0.001, "epochs": 10, "augment": True},
        "executor": LOCAL,
    }
    body.update(over)
    return body


@pytest.fixture
def exp(api: httpx.Client) -> str:
    r = api.post("/experiments", json={"name": "sentiment-exp"})
    assert r.status_code == 201
    return r.json()["id"]


def _count(api: httpx.Client) -> int:
    return len(api.get("/schedules", params={"include_deleted": True}).json()["items"])


def test_create_shows_cron_in_words_and_next_fire_times(api: httpx.Client, exp: str) -> None:
    r = api.post("/schedules", json=_body(timezone="Europe/Berlin"))
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["id"].startswith("sch-") and s["name"] == "nightly-train"
    assert s["experiment_id"] == exp and s["experiment_name"] == "sentiment-exp"
    assert s["cron_description"] == "At 02:00 every day"
    assert s["timezone"] == "Europe/Berlin"
    assert s["config"] == {"lr": 0.001, "epochs": 10, "augment": True}
    assert s["executor"] == {
        "type": "local",
        "command": LOCAL["command"],
        "env": {},
        "working_dir": None,
    }
    assert (s["overlap_policy"], s["misfire_policy"], s["paused"]) == ("skip", "run_latest", False)
    assert len(s["next_fire_times"]) == 5 and s["next_fire_times"][0] == s["next_fire_at"]
    assert s["version"] == 1 and s["created_by"] == "admin" and s["last_execution"] is None
    assert api.get(f"/schedules/{s['id']}").json() == api.get("/schedules/nightly-train").json()


def test_shortcut_and_preview(api: httpx.Client, exp: str) -> None:
    s = api.post("/schedules", json=_body(cron="@daily")).json()
    assert s["cron"] == "@daily" and s["cron_description"] == "At 00:00 every day"
    p = api.get(
        "/cron/describe", params={"cron": "*/15 9-17 * * 1-5", "timezone": "UTC", "count": 3}
    ).json()
    assert p["description"].startswith("Every 15 minutes")
    assert len(p["next_fire_times"]) == 3
    bad = _error(api.get("/cron/describe", params={"cron": "0 24 * * *"}), 422, "VALIDATION_ERROR")
    assert "hour" in bad["message"]


def test_lifecycle_pause_resume_edit_trigger_history_delete(
    api: httpx.Client, exp: str, db: Database
) -> None:
    s = api.post("/schedules", json=_body()).json()
    p = api.post(f"/schedules/{s['id']}/pause").json()
    assert p["paused"] is True and p["next_fire_at"] is None and p["next_fire_times"] == []
    r = api.post(f"/schedules/{s['id']}/resume").json()
    assert r["paused"] is False and r["next_fire_at"] is not None
    e = api.patch(f"/schedules/{s['id']}", json={"cron": "30 4 * * 1", "config": {"lr": 0.01}})
    assert e.status_code == 200, e.text
    e = e.json()
    assert e["version"] == 2 and e["cron_description"] == "At 04:30, only on Monday"
    assert e["config"] == {"lr": 0.01}
    ex = api.post(f"/schedules/{s['id']}/trigger")
    assert ex.status_code == 202 and ex.json()["trigger"] == "manual"
    hist = api.get(f"/schedules/{s['id']}/executions").json()
    assert [h["id"] for h in hist["items"]] == [ex.json()["id"]]
    assert hist["items"][0]["schedule_name"] == "nightly-train"
    queued = api.get(f"/schedules/{s['id']}/executions", params={"status": "queued"}).json()
    assert len(queued["items"]) == 1
    assert api.delete(f"/schedules/{s['id']}").status_code == 204
    gone = api.get(f"/schedules/{s['id']}").json()
    assert gone["deleted"] is True and gone["deleted_at"] and gone["next_fire_at"] is None
    # History is kept; the queued execution was dropped rather than left to run.
    (h,) = api.get(f"/schedules/{s['id']}/executions").json()["items"]
    assert h["status"] == "cancelled" and "deleted" in h["message"]
    assert api.get("/schedules").json()["items"] == []
    assert len(api.get("/schedules", params={"include_deleted": True}).json()["items"]) == 1
    with db.session(readonly=True) as ses:
        actions = list(
            ses.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("schedule.%"))
                .order_by(AuditEvent.id)
            )
        )
    assert actions == [
        "schedule.create",
        "schedule.pause",
        "schedule.resume",
        "schedule.update",
        "schedule.trigger",
        "schedule.delete",
    ]


def test_list_pages_and_filters(api: httpx.Client, exp: str) -> None:
    for i in range(5):
        api.post("/schedules", json=_body(name=f"s{i}"))
    api.post("/schedules/s1/pause")
    names, token = [], None
    while True:
        page = api.get(
            "/schedules", params={"limit": 2, **({"page_token": token} if token else {})}
        ).json()
        names += [s["name"] for s in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert names == ["s0", "s1", "s2", "s3", "s4"]
    assert [s["name"] for s in api.get("/schedules", params={"paused": True}).json()["items"]] == [
        "s1"
    ]
    assert len(api.get("/schedules", params={"experiment": "sentiment-exp"}).json()["items"]) == 5
    assert [s["name"] for s in api.get("/schedules", params={"q": "3"}).json()["items"]] == ["s3"]


def test_editing_webhook_keeps_secret_when_masked(api: httpx.Client, exp: str) -> None:
    hook = {"type": "webhook", "url": "https://ci.example.com/hook", "secret": "a" * 20}
    s = api.post("/schedules", json=_body(executor=hook)).json()
    assert s["executor"]["secret"] == "********"
    e = api.patch(
        f"/schedules/{s['id']}",
        json={"executor": {**s["executor"], "url": "https://ci2.example.com/h"}},
    )
    assert e.status_code == 200, e.text
    assert e.json()["executor"]["url"] == "https://ci2.example.com/h"
    # Creating with the mask itself is refused: there is nothing stored to keep.
    bad = _error(
        api.post("/schedules", json=_body(name="x", executor={**hook, "secret": "********"})),
        422,
        "VALIDATION_ERROR",
    )
    assert "real secret" in bad["message"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("cron", "field"),
    [
        ("61 2 * * *", "minute"),
        ("0 24 * * *", "hour"),
        ("0 2 32 * *", "day-of-month"),
        ("0 2 * 13 *", "month"),
        ("0 2 * * 9", "day-of-week"),
        ("0 2 * *", "5"),
        ("0 0 2 * * *", "5"),
        ("@reboot", "shortcut"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_invalid_cron_names_the_wrong_field(
    api: httpx.Client, exp: str, cron: str, field: str
) -> None:
    body = _error(api.post("/schedules", json=_body(cron=cron)), 422, "VALIDATION_ERROR")
    assert field in body["message"] and cron.split()[0] in body["message"]
    assert body["details"]["field"] == "cron"
    assert _count(api) == 0


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "utc+2", "../../etc/passwd", ""])
def test_unknown_timezone(api: httpx.Client, exp: str, tz: str) -> None:
    r = api.post("/schedules", json=_body(timezone=tz))
    assert r.status_code == 422, r.text
    if tz:
        assert "IANA" in r.json()["error"]["message"]
    assert _count(api) == 0


def test_unknown_experiment(api: httpx.Client) -> None:
    body = _error(
        api.post("/schedules", json=_body(experiment_id="no-such-exp")), 422, "VALIDATION_ERROR"
    )
    assert "no-such-exp" in body["message"] and "does not exist" in body["message"]
    assert _count(api) == 0


def test_duplicate_name_is_409(api: httpx.Client, exp: str) -> None:
    first = api.post("/schedules", json=_body()).json()
    body = _error(api.post("/schedules", json=_body(cron="@hourly")), 409, "CONFLICT")
    assert "nightly-train" in body["message"]
    assert _count(api) == 1
    assert api.get("/schedules/nightly-train").json()["cron"] == first["cron"]


@pytest.mark.parametrize(
    ("executor", "where"),
    [
        ({"type": "webhook", "secret": "x" * 20}, "executor.webhook.url"),
        ({"type": "webhook", "url": "https://x.example.com"}, "executor.webhook.secret"),
        ({"type": "webhook", "url": "ftp://x", "secret": "x" * 20}, "executor.webhook.url"),
        (
            {"type": "webhook", "url": "https://x.example.com", "secret": "short"},
            "executor.webhook.secret",
        ),
        ({"type": "kubernetes"}, "executor.kubernetes.image"),
        ({"type": "local"}, "executor.local.command"),
        ({"command": []}, "executor.local.command"),
        ({"type": "slurm", "command": ["x"]}, "executor"),
        ({"command": ["x"], "shell": True}, "executor.local.shell"),
    ],
)
def test_incomplete_executor_config(
    api: httpx.Client, exp: str, executor: dict, where: str
) -> None:
    body = _error(api.post("/schedules", json=_body(executor=executor)), 422, "VALIDATION_ERROR")
    assert where in body["message"], body["message"]
    assert _count(api) == 0


def test_executor_missing_entirely(api: httpx.Client, exp: str) -> None:
    body = _body()
    del body["executor"]
    err = _error(api.post("/schedules", json=body), 422, "VALIDATION_ERROR")
    assert "executor" in err["message"]


@pytest.mark.parametrize(
    "command",
    ["python train.py --lr 0.1; rm -rf /", "python train.py", ["python train.py --epochs 3"]],
)
def test_command_as_one_shell_string_is_refused(
    api: httpx.Client, exp: str, command: str | list[str]
) -> None:
    body = _error(
        api.post("/schedules", json=_body(executor={"command": command})), 422, "VALIDATION_ERROR"
    )
    assert "not one shell string" in body["message"] and "without a shell" in body["message"]
    assert '["python", "train.py"' in body["message"]
    assert _count(api) == 0
    s = api.post("/schedules", json=_body()).json()
    r = api.patch(f"/schedules/{s['id']}", json={"executor": {"command": command}})
    assert _error(r, 422, "VALIDATION_ERROR")["message"].count("shell") >= 1
    assert api.get(f"/schedules/{s['id']}").json()["executor"]["command"] == LOCAL["command"]


def test_editing_a_deleted_schedule(api: httpx.Client, exp: str) -> None:
    s = api.post("/schedules", json=_body()).json()
    api.delete(f"/schedules/{s['id']}")
    by_id = _error(api.patch(f"/schedules/{s['id']}", json={"cron": "@hourly"}), 409, "CONFLICT")
    assert "deleted" in by_id["message"]
    by_name = _error(
        api.patch("/schedules/nightly-train", json={"cron": "@hourly"}), 404, "NOT_FOUND"
    )
    assert "was deleted" in by_name["message"]
    for action in ("pause", "resume", "trigger"):
        _error(api.post(f"/schedules/{s['id']}/{action}"), 409, "CONFLICT")
    _error(api.delete(f"/schedules/{s['id']}"), 409, "CONFLICT")
    assert api.get(f"/schedules/{s['id']}").json()["cron"] == "0 2 * * *"


@pytest.mark.parametrize(
    "change",
    [
        {"cron": "*/0 * * * *"},
        {"timezone": "Nowhere/City"},
        {"experiment_id": "missing"},
        {"overlap_policy": "queue"},
        {"misfire_policy": "run_all"},
        {"timeout_seconds": 0},
        {"cron": None},
        {"name": "renamed"},
    ],
)
def test_bad_edits_change_nothing(api: httpx.Client, exp: str, change: dict) -> None:
    s = api.post("/schedules", json=_body()).json()
    r = api.patch(f"/schedules/{s['id']}", json=change)
    assert r.status_code == 422, r.text
    assert api.get(f"/schedules/{s['id']}").json() == s


def test_unknown_schedule_and_execution(api: httpx.Client) -> None:
    _error(api.get("/schedules/nope"), 404, "NOT_FOUND")
    _error(api.post("/schedules/nope/pause"), 404, "NOT_FOUND")
    _error(api.get("/schedules/nope/executions"), 404, "NOT_FOUND")
    _error(api.get("/schedule-executions/exe-nope"), 404, "NOT_FOUND")
    _error(api.post("/schedule-executions/exe-nope/cancel"), 404, "NOT_FOUND")


def test_bad_history_filter(api: httpx.Client, exp: str) -> None:
    api.post("/schedules", json=_body())
    body = _error(
        api.get("/schedules/nightly-train/executions", params={"status": "done"}),
        422,
        "VALIDATION_ERROR",
    )
    assert "succeeded" in body["message"]


def test_kubernetes_needs_public_url_and_known_gpu_type(api: httpx.Client, exp: str) -> None:
    k = {"type": "kubernetes", "image": "train:1"}
    body = _error(api.post("/schedules", json=_body(executor=k)), 422, "VALIDATION_ERROR")
    assert "PODSTACK_PUBLIC_URL" in body["message"]
    body = _error(
        api.post("/schedules", json=_body(executor={**k, "gpu_type": "TPUv9"})),
        422,
        "VALIDATION_ERROR",
    )
    assert "TPUv9" in body["message"] and "A100" in body["message"]
    assert _count(api) == 0


def test_roles(api: httpx.Client, exp: str, make_token: MakeToken, client_for: ClientFor) -> None:
    viewer = client_for(make_token("viewer"))
    editor = client_for(make_token("editor"))
    _error(viewer.post("/schedules", json=_body()), 403, "PERMISSION_DENIED")
    # Local commands run on the server host: admins only.
    body = _error(editor.post("/schedules", json=_body()), 403, "PERMISSION_DENIED")
    assert "admin" in body["message"] and "webhook" in body["message"]
    hook = {"type": "webhook", "url": "https://ci.example.com/h", "secret": "s" * 20}
    assert editor.post("/schedules", json=_body(name="hooked", executor=hook)).status_code == 201
    local = api.post("/schedules", json=_body()).json()
    _error(
        editor.patch(f"/schedules/{local['id']}", json={"cron": "@hourly"}),
        403,
        "PERMISSION_DENIED",
    )
    # Pausing or running an admin's job is fine for editors; viewers only look.
    assert editor.post(f"/schedules/{local['id']}/pause").status_code == 200
    assert editor.post(f"/schedules/{local['id']}/trigger").status_code == 202
    assert viewer.get(f"/schedules/{local['id']}/executions").status_code == 200
    _error(viewer.post(f"/schedules/{local['id']}/resume"), 403, "PERMISSION_DENIED")
