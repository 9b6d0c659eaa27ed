"""The scheduler loop: fire due schedules exactly once, start queued executions, watch running
ones (timeouts, cancellation, completion) and fail those whose server died.

Exactly once: a fire is claimed by locking the schedule row (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several replicas can run this loop; SQLite serialises writers) and re-checking
that it is still due, and the execution row is unique on (schedule, scheduled time). Queued
executions are claimed the same way, so each starts once.

Every time decision uses ``clock.now()``; tests inject a ``FakeClock`` and call ``tick()``.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from podstack.schemas.schedules import ExecutionStatus
from podstack.server import egress, file_modes, secretbox
from podstack.server.artifacts.store import BlobStore, StoredBlob
from podstack.server.config import Settings
from podstack.server.db.base import new_id
from podstack.server.db.session import Database
from podstack.server.schedules import executions, wakeup
from podstack.server.schedules import repository as repo
from podstack.server.schedules.executors.base import ExecutorError, Outcome
from podstack.server.schedules.executors.kubernetes import ApiFactory, KubernetesExecutor
from podstack.server.schedules.executors.local import LocalExecutor, read_tail
from podstack.server.schedules.executors.ray import RayExecutor
from podstack.server.schedules.executors.webhook import WebhookExecutor

log = logging.getLogger("podstack.scheduler")
BATCH = 100


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self._now += timedelta(**delta)
            return self._now


def default_api_url(settings: Settings) -> str:
    """PODSTACK_URL for jobs: the public URL, else this server as seen from its own host."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


@dataclass
class TickReport:
    fired: int = 0
    started: int = 0
    finished: int = 0


class Scheduler:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        store: BlobStore,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        api_url: str | None = None,
        kubernetes_api: ApiFactory | None = None,
        webhook_transport: Any = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.store = store
        self.clock: Clock = clock or SystemClock()
        wakeup.register(self)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id('w', 4)}"
        self.api_url = (api_url or default_api_url(settings)).rstrip("/")
        self.policy = executions.FirePolicy(
            misfire_threshold_seconds=settings.scheduler_misfire_threshold_seconds,
            default_grace_seconds=settings.scheduler_misfire_grace_seconds,
            tick_seconds=settings.scheduler_tick_seconds,
        )
        self.work_dir = Path(settings.home) / "executions"
        self.local = LocalExecutor(
            self.work_dir, kill_grace_seconds=settings.scheduler_kill_grace_seconds
        )
        self.webhook = WebhookExecutor(
            allow=egress.allow_list(settings),
            secrets=secretbox.for_settings(settings),
            timeout=settings.scheduler_webhook_timeout_seconds,
            transport=webhook_transport,
        )
        self.kubernetes = KubernetesExecutor(
            namespace=settings.kubernetes_namespace,
            gpu_types=settings.kubernetes_gpu_types,
            api_factory=kubernetes_api,
        )
        self.ray = RayExecutor(allow=egress.allow_list(settings))
        self._wake = threading.Event()
        self._tick_lock = threading.Lock()

    # ------------------------------------------------------------ the loop

    def wake(self) -> None:
        """Run the next tick now (a Run now, a cancel) instead of at the next interval."""
        self._wake.set()

    def wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()

    def interval(self) -> float:
        # Watch our own processes closely; otherwise the configured pace.
        base = self.settings.scheduler_tick_seconds
        return min(base, 1.0) if self.local.running() else base

    def tick(self) -> TickReport:
        """One pass. Each step has its own transactions; one failing step does not stop the
        others (the next tick retries)."""
        with self._tick_lock:
            report = TickReport()
            for step in (self.fire_due, self.watch, self.reap, self.dispatch):
                try:
                    n = step()
                except Exception:
                    log.exception("scheduler step %s failed", step.__name__)
                    continue
                if step is self.fire_due:
                    report.fired = n
                elif step is self.dispatch:
                    report.started = n
                elif step is self.watch:
                    report.finished = n
            return report

    def run_until_idle(self, timeout: float = 60.0, poll: float = 0.05) -> None:
        """Tests: tick until no execution is queued or running (real time bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            with self.db.session(readonly=True) as s:
                busy = repo.ready_execution_ids(s, self.clock.now(), 1) or repo.running_ids(s)
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"executions still active after {timeout}s: {busy}")
            time.sleep(poll)

    # ------------------------------------------------------------ firing

    def fire_due(self) -> int:
        now = self.clock.now()
        with self.db.session(readonly=True) as s:
            ids = repo.due_schedule_ids(s, now, BATCH)
        fired = 0
        for sid in ids:
            try:
                with self.db.session() as s:
                    row = repo.lock_due_schedule(s, sid, now)
                    if row is None:
                        continue  # another replica has it, or fired it already
                    fired += len(executions.fire(s, row, now, self.policy))
            except IntegrityError:
                log.info("schedule %s: fire at %s recorded by another scheduler", sid, now)
        return fired

    # ------------------------------------------------------------ starting

    def dispatch(self) -> int:
        now = self.clock.now()
        with self.db.session(readonly=True) as s:
            ids = repo.ready_execution_ids(s, now, BATCH)
        started = 0
        for eid in ids:
            with self.db.session() as s:
                ex = repo.lock_execution(s, eid, ExecutionStatus.QUEUED.value)
                if ex is None:
                    continue
                job = executions.start(
                    s,
                    ex,
                    worker=self.worker_id,
                    now=now,
                    lease_seconds=self.settings.scheduler_lease_seconds,
                    api_url=self.api_url,
                )
            if job is None:
                continue
            started += 1
            self._launch(job, now)
        return started

    def _launch(self, job: executions.JobSpec, now: datetime) -> None:
        kind = job.executor.get("type", "local")
        try:
            if kind == "local":
                self.local.start(job, now)
                external = None
            elif kind == "webhook":
                external = self.webhook.start(job)
            elif kind == "kubernetes":
                external = self.kubernetes.start(job)
            elif kind == "ray":
                external = self.ray.start(job)
            else:
                raise ExecutorError(f"Unknown executor {kind!r}.")
        except ExecutorError as exc:
            self._start_failed(job, exc)
            return
        except Exception as exc:  # a bug or an unexpected client error: fail clearly
            log.exception("execution %s: executor %s crashed", job.execution_id, kind)
            self._start_failed(job, ExecutorError(executions.error_text(exc)))
            return
        if kind != "local":
            with self.db.session() as s:
                ex = repo.get_execution(s, job.execution_id, for_update=True)
                if ex is not None and ex.status == ExecutionStatus.RUNNING.value:
                    executions.submitted(s, ex, external)

    def _start_failed(self, job: executions.JobSpec, exc: ExecutorError) -> None:
        now = self.clock.now()
        with self.db.session() as s:
            ex = repo.get_execution(s, job.execution_id, for_update=True)
            if ex is None or ex.status != ExecutionStatus.RUNNING.value:
                return
            if exc.retryable and ex.attempts < self.settings.scheduler_max_start_attempts:
                executions.retry_later(s, ex, now, exc.message)
                return
            tries = f" (after {ex.attempts} attempts)" if ex.attempts > 1 else ""
            executions.finish(
                s,
                ex,
                ExecutionStatus.FAILED.value,
                now=now,
                message=f"Could not start the job{tries}: {exc.message}",
            )

    # ------------------------------------------------------------ watching

    def watch(self) -> int:
        return self._watch_local() + self._watch_remote()

    def _watch_local(self) -> int:
        ids = self.local.running()
        if not ids:
            return 0
        now = self.clock.now()
        with self.db.session(readonly=True) as s:
            stop = repo.cancel_flags(s, ids)
        for eid in ids:
            if stop.get(eid) or eid not in stop:
                self.local.kill(eid, "cancel", "Cancelled: the process group was killed.")
            elif self.local.timed_out(eid, now):
                self.local.kill(eid, "timeout", "Timed out: the process group was killed.")
        finished = 0
        for eid in ids:
            outcome = self.local.poll(eid)
            if outcome is not None:
                self._complete(eid, outcome)
                finished += 1
        alive = self.local.running()
        if alive:
            with self.db.session() as s:
                until = now + timedelta(seconds=self.settings.scheduler_lease_seconds)
                repo.renew_leases(s, alive, self.worker_id, until)
        return finished

    def _watch_remote(self) -> int:
        now = self.clock.now()
        with self.db.session(readonly=True) as s:
            rows = repo.running_remote(s)
        finished = 0
        for r in rows:
            eid, kind, external, started_at, cancel, lease, timeout, executor = (
                r.id,
                r.executor,
                r.external_id,
                r.started_at,
                r.cancel_requested,
                r.lease_until,
                r.timeout_seconds,
                r.config,
            )
            if lease is not None:
                continue  # still being submitted by its dispatcher
            overdue = (
                timeout is not None
                and started_at is not None
                and (now - started_at).total_seconds() >= timeout
            )
            outcome: Outcome | None = None
            try:
                if kind == "kubernetes" and external:
                    if cancel:
                        self.kubernetes.cancel(external, executor)
                        outcome = Outcome(
                            ExecutionStatus.CANCELLED.value,
                            message=f"Cancelled: Job {external} was deleted.",
                        )
                    else:
                        outcome = self.kubernetes.poll(external, executor)
                        # activeDeadlineSeconds normally ends it; this is the backstop.
                        if (
                            outcome is None
                            and overdue
                            and (now - started_at).total_seconds()
                            >= (timeout + 2 * self.settings.scheduler_lease_seconds)
                        ):
                            self.kubernetes.cancel(external, executor)
                            outcome = Outcome(
                                ExecutionStatus.TIMED_OUT.value,
                                message=f"Timed out: Job {external} was deleted.",
                            )
                elif kind == "ray" and external:
                    outcome = self.ray.check(external, executor, cancel=cancel, overdue=overdue)
                elif kind == "webhook":
                    if cancel:
                        outcome = Outcome(
                            ExecutionStatus.CANCELLED.value,
                            message="Cancelled: the run token was revoked; the external system "
                            "was not told to stop.",
                        )
                    elif overdue:
                        outcome = Outcome(
                            ExecutionStatus.TIMED_OUT.value,
                            message=f"Timed out: no completion callback within {timeout} s; "
                            "the run token was revoked.",
                        )
            except ExecutorError as exc:
                log.warning("execution %s: %s", eid, exc.message)
                continue
            if outcome is not None:
                self._complete(eid, outcome)
                finished += 1
        return finished

    def _complete(self, execution_id: str, outcome: Outcome) -> None:
        """Stores the log (outside the transaction: it may be large), then records the end."""
        blob: StoredBlob | None = None
        tail: str | None = None
        path = outcome.log_path
        temp: Path | None = None
        try:
            if path is None and outcome.log_text is not None:
                file_modes.private_dirs(self.work_dir)
                fd, name = tempfile.mkstemp(
                    prefix=f"{execution_id}-", suffix=".log", dir=self.work_dir
                )
                with os.fdopen(fd, "wb") as fh:
                    fh.write(outcome.log_text.encode())
                path = temp = Path(name)
            if path is not None and path.exists():
                tail = read_tail(path, executions.LOG_TAIL_CHARS)
                blob = self.store.put_file(path)
            with self.db.session() as s:
                ex = repo.get_execution(s, execution_id, for_update=True)
                if ex is not None:
                    executions.finish(
                        s,
                        ex,
                        outcome.status,
                        now=self.clock.now(),
                        exit_code=outcome.exit_code,
                        message=outcome.message,
                        log_tail=tail,
                        log_blob=blob,
                    )
        finally:
            for p in (outcome.log_path, temp):
                if p is not None:
                    p.unlink(missing_ok=True)

    # ------------------------------------------------------------ recovery

    def reap(self) -> int:
        now = self.clock.now()
        mine = set(self.local.running())
        with self.db.session(readonly=True) as s:
            ids = [i for i in repo.expired_leases(s, now) if i not in mine]
        reaped = 0
        for eid in ids:
            with self.db.session() as s:
                reaped += int(executions.reap(s, eid, now))
        return reaped

    def shutdown(self, grace: float = 5.0) -> None:
        """Server stopping: kill our local jobs and record why (their runs end FAILED)."""
        self.webhook.close()
        ids = self.local.running()
        for eid in ids:
            self.local.kill(
                eid, "shutdown", "The server stopped while the job was running; it was killed."
            )
        if ids:
            self.local.wait_all(grace)
            for eid in ids:
                outcome = self.local.poll(eid)
                if outcome is not None:
                    try:
                        self._complete(eid, outcome)
                    except Exception:
                        log.exception("recording the end of %s at shutdown failed", eid)
