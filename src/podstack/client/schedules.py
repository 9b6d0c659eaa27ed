"""SDK: scheduled training (schedules, Run now, execution history, cancel)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from podstack.client.base import BaseClient, seg
from podstack.schemas import schedules as sch

# Distinguishes "leave unchanged" from "clear" (None) in update_schedule.
_UNSET: Any = object()


def _executor(
    command: Sequence[str] | str | None, executor: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    if command is not None and executor is not None:
        raise TypeError("give either command (local executor) or executor, not both")
    if command is not None:
        # A string is passed through as is: the server refuses it with the explanation.
        return {"type": "local", "command": command if isinstance(command, str) else list(command)}
    return dict(executor) if executor is not None else None


class SchedulesAPI(BaseClient):
    def create_schedule(
        self,
        name: str,
        experiment_id: str,
        cron: str,
        config: Mapping[str, Any] | None = None,
        *,
        command: Sequence[str] | None = None,
        executor: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        description: str | None = None,
        overlap_policy: str = "skip",
        misfire_policy: str = "run_latest",
        misfire_grace_seconds: int | None = None,
        timeout_seconds: int | None = None,
        paused: bool = False,
    ) -> sch.Schedule:
        """Creates a schedule that runs a training job on ``cron`` (5 fields, or ``@daily``
        and friends) in ``timezone``, logging ``config`` as the params of each run.

        The job is ``command`` (an argument list run on the server, admins only) or an
        ``executor`` mapping: ``{"type": "webhook", "url": ..., "secret": ...}`` or
        ``{"type": "kubernetes", "image": ..., "gpu_type": "A100"}``.
        """
        body = {
            "name": name,
            "experiment_id": experiment_id,
            "cron": cron,
            "timezone": timezone,
            "config": dict(config or {}),
            "executor": _executor(command, executor),
            "description": description,
            "overlap_policy": overlap_policy,
            "misfire_policy": misfire_policy,
            "misfire_grace_seconds": misfire_grace_seconds,
            "timeout_seconds": timeout_seconds,
            "paused": paused,
        }
        return sch.Schedule.model_validate(self._request("POST", "/schedules", json=body))

    def list_schedules(
        self,
        query: str | None = None,
        *,
        experiment_id: str | None = None,
        paused: bool | None = None,
        include_deleted: bool = False,
        max_results: int | None = None,
    ) -> list[sch.Schedule]:
        params = {
            "q": query,
            "experiment": experiment_id,
            "paused": paused,
            "include_deleted": include_deleted,
            "limit": 1000,
        }
        return [
            sch.Schedule.model_validate(s)
            for s in self._paginate("/schedules", "items", params, max_results)
        ]

    def get_schedule(self, schedule: str) -> sch.Schedule:
        """By name or id (deleted schedules stay reachable by id, with their history)."""
        return sch.Schedule.model_validate(self._request("GET", f"/schedules/{seg(schedule)}"))

    def update_schedule(
        self,
        schedule: str,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        config: Mapping[str, Any] | None = None,
        command: Sequence[str] | None = None,
        executor: Mapping[str, Any] | None = None,
        experiment_id: str | None = None,
        description: str | None = None,
        overlap_policy: str | None = None,
        misfire_policy: str | None = None,
        misfire_grace_seconds: int | None = _UNSET,
        timeout_seconds: int | None = _UNSET,
    ) -> sch.Schedule:
        """Edits the fields given (``config`` is replaced whole). The next fire is
        recomputed; executions still queued for the old definition are dropped. Pass
        ``timeout_seconds=None`` to remove the timeout."""
        body: dict[str, Any] = {
            k: v
            for k, v in {
                "cron": cron,
                "timezone": timezone,
                "config": None if config is None else dict(config),
                "executor": _executor(command, executor),
                "experiment_id": experiment_id,
                "description": description,
                "overlap_policy": overlap_policy,
                "misfire_policy": misfire_policy,
            }.items()
            if v is not None
        }
        if misfire_grace_seconds is not _UNSET:
            body["misfire_grace_seconds"] = misfire_grace_seconds
        if timeout_seconds is not _UNSET:
            body["timeout_seconds"] = timeout_seconds
        return sch.Schedule.model_validate(
            self._request("PATCH", f"/schedules/{seg(schedule)}", json=body)
        )

    def pause_schedule(self, schedule: str) -> sch.Schedule:
        return sch.Schedule.model_validate(
            self._request("POST", f"/schedules/{seg(schedule)}/pause")
        )

    def resume_schedule(self, schedule: str) -> sch.Schedule:
        """Resumes from now on: ticks missed while paused are not run."""
        return sch.Schedule.model_validate(
            self._request("POST", f"/schedules/{seg(schedule)}/resume")
        )

    def delete_schedule(self, schedule: str) -> None:
        """Stops and removes the schedule; its execution history and runs are kept."""
        self._request("DELETE", f"/schedules/{seg(schedule)}")

    def trigger_schedule(self, schedule: str) -> sch.Execution:
        """Run now (also while paused). Returns the queued execution."""
        return sch.Execution.model_validate(
            self._request("POST", f"/schedules/{seg(schedule)}/trigger")
        )

    def list_schedule_executions(
        self, schedule: str, *, status: str | None = None, max_results: int | None = None
    ) -> list[sch.Execution]:
        """Execution history, newest first."""
        params = {"status": status, "limit": 1000}
        return [
            sch.Execution.model_validate(e)
            for e in self._paginate(
                f"/schedules/{seg(schedule)}/executions", "items", params, max_results
            )
        ]

    def get_schedule_execution(self, execution_id: str) -> sch.Execution:
        return sch.Execution.model_validate(
            self._request("GET", f"/schedule-executions/{seg(execution_id)}")
        )

    def cancel_execution(self, execution_id: str) -> sch.Execution:
        """Queued: cancelled at once. Running: its process group is killed (local), its Job
        deleted (Kubernetes) or its token revoked (webhook) within a scheduler tick."""
        return sch.Execution.model_validate(
            self._request("POST", f"/schedule-executions/{seg(execution_id)}/cancel")
        )

    def describe_cron(self, cron: str, timezone: str = "UTC", count: int = 5) -> sch.CronPreview:
        """The expression in words and its next fire times (validates it too)."""
        return sch.CronPreview.model_validate(
            self._request(
                "GET", "/cron/describe", params={"cron": cron, "timezone": timezone, "count": count}
            )
        )
