"""Ray executor: one Ray job per execution, submitted through Ray's own Job Submission client
(``ray.job_submission.JobSubmissionClient``; optional extra ``pip install 'podstack[ray]'``)
and reconciled every scheduler tick.

- The submission id is the execution id, so a retried start finds the job it already
  submitted instead of starting a second one (Ray refuses a duplicate submission id too).
- The job gets the same ``PODSTACK_*`` variables as a local job, through the runtime
  environment's ``env_vars``. Ray has no secret store for jobs: whoever can open the cluster's
  dashboard can read them. What is exposed is the run-scoped token (it can only log into this
  one run), which is revoked the moment the execution ends and expires on its own an hour
  after the schedule's timeout. It is never written to a log or an execution message.
- Egress: Ray's client makes its own HTTP requests (through ``requests``), so they cannot go
  through ``egress.EgressClient``. The address is checked with ``egress.check`` at creation
  and again before every submission, poll and stop; what the client then connects to is
  resolved again by it (the gap a pinned connection closes elsewhere; see the README).
"""

from __future__ import annotations

import logging
import shlex
from typing import Any

from podstack.errors import ValidationFailed
from podstack.schemas.schedules import ExecutionStatus
from podstack.server import egress
from podstack.server.schedules.executions import JobSpec
from podstack.server.schedules.executors.base import ExecutorError, Outcome

log = logging.getLogger("podstack.scheduler")

# Ray's convention for "a node with this accelerator": the resource ``accelerator_type:<T>``
# that each node advertises for its GPU model; a tiny amount asks for the node, not a share.
ACCELERATOR_RESOURCE = "accelerator_type:{}"
ACCELERATOR_AMOUNT = 0.001
LOG_TAIL_CHARS = 64_000
CONNECT_TIMEOUT_SECONDS = 10.0


def _client_class() -> Any:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise ExecutorError(
            "The ray executor needs the 'ray' package on the server: pip install 'podstack[ray]'."
        ) from None
    return JobSubmissionClient


def submit_kwargs(job: JobSpec) -> dict[str, Any]:
    """The arguments of ``JobSubmissionClient.submit_job`` for one execution (no I/O)."""
    cfg = job.executor
    runtime = dict(cfg.get("runtime_env") or {})
    # The schedule's variables first, the job's run variables last: a schedule cannot point a
    # job at another run (the same rule as the local executor).
    env_vars = {**(runtime.get("env_vars") or {}), **job.env()}
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    for key in ("working_dir", "py_modules", "pip"):
        if runtime.get(key):
            runtime_env[key] = runtime[key]
    kwargs: dict[str, Any] = {
        # Ray runs the entrypoint through a shell; each argument is quoted so the list means
        # exactly what it says (no word splitting or expansion of an argument).
        "entrypoint": shlex.join(str(a) for a in cfg["entrypoint"]),
        "submission_id": job.execution_id,
        "runtime_env": runtime_env,
        "metadata": {
            "podstack.schedule": job.schedule_name,
            "podstack.execution_id": job.execution_id,
            "podstack.run_id": job.run_id,
        },
    }
    num_gpus = cfg.get("num_gpus")
    if cfg.get("gpu_type"):
        num_gpus = 1 if num_gpus is None else num_gpus
        kwargs["entrypoint_resources"] = {
            ACCELERATOR_RESOURCE.format(cfg["gpu_type"]): ACCELERATOR_AMOUNT
        }
    if cfg.get("num_cpus") is not None:
        kwargs["entrypoint_num_cpus"] = cfg["num_cpus"]
    if num_gpus:
        kwargs["entrypoint_num_gpus"] = num_gpus
    return kwargs


def _error_text(exc: BaseException) -> str:
    # Ray's client puts the job server's whole traceback into the message; the last line
    # says what went wrong.
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:500]


def _missing(exc: BaseException) -> bool:
    return "does not exist" in str(exc) or "status code 404" in str(exc)


class RayExecutor:
    kind = "ray"

    def __init__(self, *, allow: egress.AllowList) -> None:
        self.allow = allow
        self._clients: dict[str, Any] = {}

    def _client(self, address: str) -> Any:
        """A client per address. Every use first probes the address through the egress gate
        (rules checked, connection pinned, bounded time): Ray's own client has no timeout."""
        try:
            probe(address, self.allow)
        except RayUnreachable as exc:
            raise ExecutorError(exc.message, retryable=True) from None
        client = self._clients.get(address)
        if client is None:
            cls = _client_class()
            try:
                client = cls(address)
            except Exception as exc:
                raise ExecutorError(
                    f"Ray job server at {egress.display_url(address)} is not reachable: "
                    f"{_error_text(exc)}",
                    retryable=True,
                ) from None
            self._clients[address] = client
        return client

    def start(self, job: JobSpec) -> str:
        address = job.executor["address"]
        client = self._client(address)
        sid = job.execution_id
        try:
            client.get_job_info(sid)
            # Submitted by an earlier attempt at this execution (its answer was lost).
            log.info("execution %s: Ray job %s already submitted", sid, sid)
            return sid
        except Exception as exc:
            if not _missing(exc):
                raise ExecutorError(
                    f"Ray job server at {egress.display_url(address)} failed: {_error_text(exc)}",
                    retryable=True,
                ) from None
        try:
            client.submit_job(**submit_kwargs(job))
        except Exception as exc:
            if "already exists" in str(exc):
                return sid  # a concurrent attempt won the race: still one job
            text = _error_text(exc)
            # A refused job description (400) will be refused again; anything else (server
            # down, 5xx) may work on a later attempt.
            raise ExecutorError(
                f"Submitting Ray job {sid} failed: {text}",
                retryable="status code 400" not in str(exc),
            ) from None
        log.info("execution %s submitted as Ray job %s", sid, sid)
        return sid

    def check(
        self, submission_id: str, executor: dict[str, Any], *, cancel: bool, overdue: bool
    ) -> Outcome | None:
        """Reconciles one job: stops it when cancelled or overdue, then None while it runs,
        else its outcome with the driver's exit code and log."""
        client = self._client(executor["address"])
        try:
            if cancel or overdue:
                client.stop_job(submission_id)
            info = client.get_job_info(submission_id)
        except Exception as exc:
            if _missing(exc):
                return Outcome(
                    ExecutionStatus.FAILED.value,
                    message=f"Ray job {submission_id} disappeared from the cluster.",
                )
            raise ExecutorError(
                f"Reading Ray job {submission_id} failed: {_error_text(exc)}", retryable=True
            ) from None
        status = str(getattr(info.status, "value", info.status))
        if cancel:
            result = ExecutionStatus.CANCELLED.value
            message = f"Cancelled: Ray job {submission_id} was stopped."
        elif overdue:
            result = ExecutionStatus.TIMED_OUT.value
            message = f"Timed out: Ray job {submission_id} was stopped."
        elif status == "SUCCEEDED":
            result, message = ExecutionStatus.SUCCEEDED.value, "Ray job succeeded."
        elif status == "FAILED":
            result = ExecutionStatus.FAILED.value
            message = f"Ray job failed: {(info.message or '').strip()[:1000]}".strip()
        elif status == "STOPPED":
            result = ExecutionStatus.CANCELLED.value
            message = f"Ray job {submission_id} was stopped outside Podstack."
        else:
            return None  # PENDING, RUNNING
        if (cancel or overdue) and status not in ("SUCCEEDED", "FAILED", "STOPPED"):
            # stop_job is asynchronous: the end is recorded once Ray confirms it (a later
            # tick), so the log is complete and the job's processes are gone.
            return None
        return self._finish(client, submission_id, result, message, info)

    @staticmethod
    def _finish(client: Any, submission_id: str, result: str, message: str, info: Any) -> Outcome:
        try:
            text = client.get_job_logs(submission_id)
        except Exception:
            text = None
        if text and len(text) > LOG_TAIL_CHARS:
            text = text[-LOG_TAIL_CHARS:]
        return Outcome(
            status=result,
            exit_code=getattr(info, "driver_exit_code", None),
            message=message,
            log_text=text,
        )

    def cancel(self, submission_id: str, executor: dict[str, Any]) -> None:
        try:
            self._client(executor["address"]).stop_job(submission_id)
        except ExecutorError:
            raise
        except Exception as exc:
            if not _missing(exc):
                raise ExecutorError(
                    f"Stopping Ray job {submission_id} failed: {_error_text(exc)}",
                    retryable=True,
                ) from None


class RayUnreachable(Exception):
    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.refused = refused


def probe(address: str, allow: egress.AllowList, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str:
    """GET ``/api/version`` through the egress gate: the Ray version, or RayUnreachable."""
    shown = egress.display_url(address)
    url = address.rstrip("/") + "/api/version"
    try:
        with egress.EgressClient(allow, timeout=timeout) as http:
            resp = http.request("GET", url)
    except egress.Refused as exc:
        raise RayUnreachable(
            f"Ray address {shown} refused: {exc.reason} (an admin can allow it with "
            f"{egress.ALLOW_ENV})",
            refused=True,
        ) from None
    except Exception as exc:
        raise RayUnreachable(f"No Ray job server answers at {shown}: {exc}") from None
    try:
        version = str(resp.json()["ray_version"]) if resp.status_code == 200 else ""
    except (ValueError, KeyError, TypeError):
        version = ""
    if not version:
        raise RayUnreachable(
            f"{shown} answered HTTP {resp.status_code} but is not a Ray dashboard / job "
            "server (GET /api/version gave no ray_version)"
        )
    return version


def validate(address: str, settings: Any) -> None:
    """At creation and update: the address passes the egress rules and a Ray job server
    answers there (ValidationFailed, 422, naming ``executor.address`` otherwise)."""
    egress.validate_url(address, settings, what="Ray address", field="executor.address")
    try:
        _client_class()
    except ExecutorError as exc:
        raise ValidationFailed(exc.message, {"field": "executor.type"}) from None
    try:
        probe(address, egress.allow_list(settings))
    except RayUnreachable as exc:
        hint = (
            ""
            if exc.refused
            else ". Give the head node's dashboard address (default port 8265), reachable "
            "from the Podstack server"
        )
        raise ValidationFailed(exc.message + hint + ".", {"field": "executor.address"}) from None
