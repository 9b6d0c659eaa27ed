"""REST for in-app notifications (everyone, their own), webhooks and email outbox (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from podstack.schemas import notifications as sch
from podstack.schemas.common import Page
from podstack.server.deps import AdminCtx, Ctx, ViewerCtx
from podstack.server.notifications import delivery, service

router = APIRouter(tags=["notifications and webhooks"])

Limit = Annotated[int | None, Query(description="Page size (1-1000, default 100).")]
PageToken = Annotated[str | None, Query(description="next_page_token of the previous page.")]


def delivery_config(ctx: Ctx) -> delivery.DeliveryConfig:
    # Operators (and tests) may put a tuned config on app.state; the defaults suit production.
    return getattr(ctx.state, "delivery_config", None) or delivery.DeliveryConfig()


# ---------------------------------------------------------------- in-app notifications


@router.get("/notifications", response_model=Page[sch.Notification], summary="My notifications")
def list_notifications(
    ctx: ViewerCtx,
    unread: Annotated[bool, Query(description="Only unread ones.")] = False,
    limit: Limit = None,
    page_token: PageToken = None,
) -> Page[sch.Notification]:
    with ctx.read() as s:
        items, token = service.list_notifications(
            s, ctx.principal.user_id, unread_only=unread, limit=limit, page_token=page_token
        )
        return Page(
            items=[sch.Notification.model_validate(n) for n in items], next_page_token=token
        )


@router.get("/notifications/unread-count", response_model=sch.UnreadCount)
def unread_count(ctx: ViewerCtx) -> sch.UnreadCount:
    with ctx.read() as s:
        return sch.UnreadCount(unread=service.unread_count(s, ctx.principal.user_id))


@router.post("/notifications/mark-read", response_model=sch.MarkedRead)
def mark_read(body: sch.MarkRead, ctx: ViewerCtx) -> sch.MarkedRead:
    with ctx.write() as s:
        n = service.mark_read(s, ctx.principal.user_id, body.ids, body.all)
        return sch.MarkedRead(marked=n)


# ---------------------------------------------------------------- webhooks (admins)


@router.post("/webhooks", status_code=201, response_model=sch.WebhookCreated)
def create_webhook(body: sch.WebhookCreate, ctx: AdminCtx) -> sch.WebhookCreated:
    with ctx.write() as s:
        hook, secret = service.create_webhook(s, ctx.actor, body, settings=ctx.settings)
        return sch.WebhookCreated(**sch.Webhook.model_validate(hook).model_dump(), secret=secret)


@router.get("/webhooks", response_model=Page[sch.Webhook])
def list_webhooks(ctx: AdminCtx) -> Page[sch.Webhook]:
    with ctx.read() as s:
        return Page(items=[sch.Webhook.model_validate(h) for h in service.list_webhooks(s)])


@router.get("/webhooks/{webhook_id}", response_model=sch.Webhook)
def get_webhook(webhook_id: str, ctx: AdminCtx) -> sch.Webhook:
    with ctx.read() as s:
        return sch.Webhook.model_validate(service.get_webhook(s, webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=sch.Webhook)
def update_webhook(webhook_id: str, body: sch.WebhookUpdate, ctx: AdminCtx) -> sch.Webhook:
    with ctx.write() as s:
        hook = service.update_webhook(s, ctx.actor, webhook_id, body, settings=ctx.settings)
        return sch.Webhook.model_validate(hook)


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, ctx: AdminCtx) -> Response:
    with ctx.write() as s:
        service.delete_webhook(s, ctx.actor, webhook_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=sch.WebhookDelivery,
    summary="Send a signed webhook.test delivery now and return its result",
)
def test_webhook(webhook_id: str, ctx: AdminCtx) -> sch.WebhookDelivery:
    with ctx.write() as s:
        delivery_id = service.enqueue_test(s, ctx.actor, webhook_id).id
    # Committed first, so the attempt is recorded even if this request is cut short.
    delivery.deliver_now(ctx.db, delivery_id, delivery_config(ctx), settings=ctx.settings)
    with ctx.read() as s:
        return service.delivery_views(s, [service.get_delivery(s, delivery_id)], with_body=True)[0]


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[sch.WebhookDelivery])
def list_deliveries(
    webhook_id: str,
    ctx: AdminCtx,
    status: Annotated[str | None, Query(description="pending | delivered | failed")] = None,
    limit: Limit = None,
    page_token: PageToken = None,
) -> Page[sch.WebhookDelivery]:
    with ctx.read() as s:
        items, token = service.list_deliveries(
            s, webhook_id, status=status, limit=limit, page_token=page_token
        )
        return Page(items=service.delivery_views(s, items), next_page_token=token)


@router.get("/webhook-deliveries/{delivery_id}", response_model=sch.WebhookDelivery)
def get_delivery(delivery_id: str, ctx: AdminCtx) -> sch.WebhookDelivery:
    with ctx.read() as s:
        return service.delivery_views(s, [service.get_delivery(s, delivery_id)], with_body=True)[0]


@router.post("/webhook-deliveries/{delivery_id}/redeliver", response_model=sch.WebhookDelivery)
def redeliver(delivery_id: str, ctx: AdminCtx) -> sch.WebhookDelivery:
    with ctx.write() as s:
        d = service.redeliver(s, ctx.actor, delivery_id)
        return service.delivery_views(s, [d])[0]


@router.get("/email-deliveries", response_model=Page[sch.EmailDelivery])
def list_emails(
    ctx: AdminCtx,
    status: Annotated[str | None, Query(description="pending | sent | failed | skipped")] = None,
    limit: Limit = None,
    page_token: PageToken = None,
) -> Page[sch.EmailDelivery]:
    with ctx.read() as s:
        items, token = service.list_emails(s, status=status, limit=limit, page_token=page_token)
        return Page(
            items=[sch.EmailDelivery.model_validate(m) for m in items], next_page_token=token
        )
