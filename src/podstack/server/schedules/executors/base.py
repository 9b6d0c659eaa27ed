"""What executors share: their errors and the outcome they report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ExecutorError(Exception):
    """The job could not be started or checked. ``retryable``: worth another attempt later
    (a receiver that is down), as opposed to a configuration problem."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass
class Outcome:
    """How a job ended. ``log_path`` is a file to store as the run's log artifact (and to take
    the tail from); ``log_text`` is log text fetched from elsewhere (Kubernetes)."""

    status: str  # an ExecutionStatus value: succeeded, failed, timed_out, cancelled
    exit_code: int | None = None
    message: str | None = None
    log_path: Path | None = None
    log_text: str | None = None
