"""Webhook executor: a signed POST describing the job to an external orchestrator (Airflow,
Prefect, CI), which runs it and reports back through the callback URL.

The body carries the run id, scheduled time, params, the callback URL, an idempotency key
(the execution id: the same on every retry of one execution) and a token limited to the run,
which the receiver uses to log metrics and to call the callback. Signatures are those of
``podstack.server.events.signing`` (verified the same way as notification webhooks).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from podstack.server import egress, secretbox
from podstack.server.events import signing
from podstack.server.schedules.executions import JobSpec
from podstack.server.schedules.executors.base import ExecutorError

IDEMPOTENCY_HEADER = "Idempotency-Key"


def payload(job: JobSpec) -> dict[str, Any]:
    return {
        "type": "schedule.execution",
        "idempotency_key": job.execution_id,
        "execution_id": job.execution_id,
        "schedule_id": job.schedule_id,
        "schedule_name": job.schedule_name,
        "run_id": job.run_id,
        "experiment_id": job.experiment_id,
        "scheduled_time": job.scheduled_time.isoformat(),
        "trigger": job.trigger,
        "params": job.params,
        "config": job.config,
        "timeout_seconds": job.timeout_seconds,
        "attempt": job.attempt,
        "api_url": job.api_url,
        "api_token": job.api_token,
        "callback_url": job.callback_url,
    }


class WebhookExecutor:
    """Sends through the egress gate (egress.py): the URL is checked again at every start and
    the connection goes to the checked address. Execution messages, which viewers read, carry
    the receiver's status and answer size, never its body."""

    kind = "webhook"

    def __init__(
        self,
        *,
        allow: egress.AllowList,
        secrets: secretbox.SecretBox,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.allow = allow
        self.secrets = secrets
        self.timeout = timeout
        self.transport = transport
        self._http: egress.EgressClient | None = None

    def _client(self) -> egress.EgressClient:
        # One pooled client (building one per request costs an SSL context each time).
        if self._http is None:
            self._http = egress.EgressClient(
                self.allow, timeout=self.timeout, transport=self.transport
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def start(self, job: JobSpec) -> str:
        url = job.executor["url"]
        shown = egress.display_url(url)
        try:
            secret = self.secrets.decrypt(job.executor["secret"])
        except secretbox.SecretKeyError as exc:
            raise ExecutorError(str(exc), retryable=False) from None
        body = json.dumps(payload(job), separators=(",", ":"), sort_keys=True).encode()
        headers = signing.sign_headers(secret, job.execution_id, body)
        headers.update(
            {
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: job.execution_id,
                "User-Agent": "podstack-scheduler",
            }
        )
        try:
            resp = self._client().post(url, content=body, headers=headers)
        except egress.Refused as exc:
            # What resolves where may change (DNS), so it is worth another attempt later.
            raise ExecutorError(
                f"POST {shown} not sent: {exc.reason} (an admin can allow it with "
                f"{egress.ALLOW_ENV})",
                retryable=True,
            ) from None
        except httpx.HTTPError as exc:
            raise ExecutorError(f"POST {shown} failed: {exc}", retryable=True) from None
        if resp.status_code >= 300:
            # 4xx (other than throttling) means the receiver refuses this job: retrying the
            # same body will not help.
            retryable = resp.status_code >= 500 or resp.status_code in (408, 409, 425, 429)
            raise ExecutorError(egress.describe_answer("POST", url, resp), retryable=retryable)
        return job.execution_id
