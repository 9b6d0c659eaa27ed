"""SDK: in-app notifications (yours), webhooks and the email outbox (admins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from podstack.client.base import BaseClient, seg
from podstack.schemas import notifications as sch


class NotificationsAPI(BaseClient):
    # ------------------------------------------------------------------ in-app
    def list_notifications(
        self, unread_only: bool = False, max_results: int | None = 100
    ) -> list[sch.Notification]:
        """Your notifications, newest first."""
        params: dict[str, Any] = {
            "unread": "true" if unread_only else None,
            "limit": min(max_results, 1000) if max_results else None,
        }
        return [
            sch.Notification.model_validate(n)
            for n in self._paginate("/notifications", "items", params, max_items=max_results)
        ]

    def unread_notification_count(self) -> int:
        return int(self._request("GET", "/notifications/unread-count")["unread"])

    def mark_notifications_read(self, ids: Sequence[int] | None = None) -> int:
        """Marks the given notifications read (all of yours when ``ids`` is None); returns
        how many changed."""
        body: dict[str, Any] = {"all": True} if ids is None else {"ids": list(ids)}
        return int(self._request("POST", "/notifications/mark-read", json=body)["marked"])

    # ------------------------------------------------------------------ webhooks (admins)
    def create_webhook(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        model_names: Sequence[str] = (),
        description: str | None = None,
        secret: str | None = None,
        enabled: bool = True,
    ) -> sch.WebhookCreated:
        """Registers an endpoint for events (``"*"``, a family like ``"stage.*"`` or exact
        types). ``.secret`` of the result signs every delivery; it is shown only now."""
        body: dict[str, Any] = {
            "url": url,
            "events": list(events),
            "model_names": list(model_names),
            "description": description,
            "enabled": enabled,
        }
        if secret is not None:
            body["secret"] = secret
        return sch.WebhookCreated.model_validate(self._request("POST", "/webhooks", json=body))

    def list_webhooks(self) -> list[sch.Webhook]:
        return [sch.Webhook.model_validate(w) for w in self._request("GET", "/webhooks")["items"]]

    def get_webhook(self, webhook_id: str) -> sch.Webhook:
        return sch.Webhook.model_validate(self._request("GET", f"/webhooks/{seg(webhook_id)}"))

    def update_webhook(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        model_names: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> sch.Webhook:
        """Changes only what is passed."""
        body: dict[str, Any] = {}
        if url is not None:
            body["url"] = url
        if events is not None:
            body["events"] = list(events)
        if model_names is not None:
            body["model_names"] = list(model_names)
        if description is not None:
            body["description"] = description
        if enabled is not None:
            body["enabled"] = enabled
        return sch.Webhook.model_validate(
            self._request("PATCH", f"/webhooks/{seg(webhook_id)}", json=body)
        )

    def delete_webhook(self, webhook_id: str) -> None:
        self._request("DELETE", f"/webhooks/{seg(webhook_id)}")

    def test_webhook(self, webhook_id: str) -> sch.WebhookDelivery:
        """Sends a signed ``webhook.test`` delivery now; the result holds the attempt (status
        code, response excerpt or error)."""
        return sch.WebhookDelivery.model_validate(
            self._request("POST", f"/webhooks/{seg(webhook_id)}/test")
        )

    def list_webhook_deliveries(
        self, webhook_id: str, status: str | None = None, max_results: int | None = 100
    ) -> list[sch.WebhookDelivery]:
        """Newest first, each with its attempts. ``status``: pending, delivered or failed."""
        params: dict[str, Any] = {
            "status": status,
            "limit": min(max_results, 1000) if max_results else None,
        }
        path = f"/webhooks/{seg(webhook_id)}/deliveries"
        return [
            sch.WebhookDelivery.model_validate(d)
            for d in self._paginate(path, "items", params, max_items=max_results)
        ]

    def get_webhook_delivery(self, delivery_id: str) -> sch.WebhookDelivery:
        return sch.WebhookDelivery.model_validate(
            self._request("GET", f"/webhook-deliveries/{seg(delivery_id)}")
        )

    def redeliver_webhook_delivery(self, delivery_id: str) -> sch.WebhookDelivery:
        """Queues a delivered or failed delivery again (same id and body)."""
        return sch.WebhookDelivery.model_validate(
            self._request("POST", f"/webhook-deliveries/{seg(delivery_id)}/redeliver")
        )

    def list_email_deliveries(
        self, status: str | None = None, max_results: int | None = 100
    ) -> list[sch.EmailDelivery]:
        """The email outbox (admins). ``status``: pending, sent, failed or skipped."""
        params: dict[str, Any] = {
            "status": status,
            "limit": min(max_results, 1000) if max_results else None,
        }
        return [
            sch.EmailDelivery.model_validate(m)
            for m in self._paginate("/email-deliveries", "items", params, max_items=max_results)
        ]
