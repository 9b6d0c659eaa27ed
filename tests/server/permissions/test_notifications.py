"""Notifications follow READ: a notice (in the app or by email) about a model goes only to
recipients who can read the model, and a recipient who loses READ stops seeing the notices
already sent (list, unread count, mark-read answer)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from podstack.server.auth.models import User
from podstack.server.db.session import Database
from podstack.server.notifications.models import EmailMessage
from tests.conftest import LiveServer
from tests.server.permissions.conftest import World
from tests.server.permissions.test_matrix import _fresh


def _titles(world: World, who: str) -> list[str]:
    r = world.client(who).get("/notifications", params={"limit": 200})
    assert r.status_code == 200, r.text
    return [n["title"] for n in r.json()["items"]]


def _unread(world: World, who: str) -> int:
    r = world.client(who).get("/notifications/unread-count")
    assert r.status_code == 200, r.text
    return int(r.json()["unread"])


def test_notices_go_only_to_readers_and_hide_when_read_is_lost(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    _, db = perm_server
    names = world.usernames
    with db.session() as s:
        for who in ("reader", "manager", "other"):
            s.execute(
                update(User).where(User.username == names[who]).values(email=f"{who}@example.com")
            )
    model = _fresh(world, "model")
    owner = world.client("owner")
    r = owner.post(
        f"/registered-models/{model}/versions",
        json={"source_run_id": world.run_id, "artifact_path": "model.pt"},
    )
    assert r.status_code == 201, r.text
    # A reviewer list naming someone who cannot read the model (an admin's slip, or a
    # reviewer of another team): they must not learn the model exists.
    reviewers = [names["reader"], names["manager"], names["other"]]
    r = world.client("admin").put(
        f"/registered-models/{model}/approval-policy",
        json={"gated_stages": ["Production"], "reviewers": reviewers},
    )
    assert r.status_code == 200, r.text
    before = {who: _unread(world, who) for who in ("reader", "manager", "other")}
    r = world.client("editor").post(
        "/approval-requests", json={"model_name": model, "version": 1, "stage": "Production"}
    )
    assert r.status_code == 201, r.text
    about = [t for t in _titles(world, "reader") if model in t]
    assert len(about) == 1
    assert any(model in t for t in _titles(world, "manager"))
    assert not any(model in t for t in _titles(world, "other"))
    assert _unread(world, "other") == before["other"]
    assert _unread(world, "reader") == before["reader"] + 1
    with db.session() as s:
        to = set(
            s.scalars(select(EmailMessage.to_username).where(EmailMessage.body.contains(model)))
        )
    assert to == {names["reader"], names["manager"]}

    # The reader loses READ: what was said about the model disappears from their inbox.
    r = owner.delete(f"/registered-models/{model}/permissions/user/{names['reader']}")
    assert r.status_code == 204, r.text
    assert not any(model in t for t in _titles(world, "reader"))
    assert _unread(world, "reader") == before["reader"]
    marked = world.client("reader").post("/notifications/mark-read", json={"all": True})
    assert marked.json() == {"marked": before["reader"]}
    # Given back, it is there again, still unread (hidden notices are not marked).
    r = owner.put(
        f"/registered-models/{model}/permissions/user/{names['reader']}",
        json={"permission": "READ"},
    )
    assert r.status_code == 201, r.text
    assert _unread(world, "reader") == 1
    assert any(model in t for t in _titles(world, "reader"))


def test_notice_about_no_resource_reaches_everyone(
    world: World, perm_server: tuple[LiveServer, Database]
) -> None:
    from podstack.server.notifications import service

    _, db = perm_server
    title = f"hello-{uuid.uuid4().hex[:6]}"
    with db.session() as s:
        users = service.notify(s, [world.usernames["other"]], "test.kind", title)
    assert [u.username for u in users] == [world.usernames["other"]]
    assert title in _titles(world, "other")


def test_migration_names_the_model_of_existing_notifications(scratch_database_url: str) -> None:
    """0022 backfills ``model_id`` of notifications sent before it, from their approval
    request, so the read filter hides them too."""
    from sqlalchemy import insert

    from podstack.server.approvals.models import ApprovalRequest
    from podstack.server.db import migrate
    from podstack.server.db.base import utcnow
    from podstack.server.db.session import make_engine
    from podstack.server.notifications.models import Notification
    from podstack.server.registry.models import RegisteredModel

    engine = make_engine(scratch_database_url)
    try:
        migrate.upgrade(engine, "0022_protections")
        now = utcnow()
        with engine.begin() as c:
            user_id = c.execute(
                insert(User.__table__).values(
                    username="ann", role="editor", disabled=False, failed_logins=0, created_at=now
                )
            ).inserted_primary_key[0]
            model_id = c.execute(
                insert(RegisteredModel.__table__).values(
                    name="m", created_at=now, updated_at=now, next_version=1
                )
            ).inserted_primary_key[0]
            c.execute(
                insert(ApprovalRequest.__table__).values(
                    id="apr-1",
                    kind="stage",
                    model_id=model_id,
                    model_name="m",
                    version=1,
                    from_stage="None",
                    to_stage="Production",
                    requester="ann",
                    status="pending",
                    created_at=now,
                )
            )
            # Only the columns that exist at 0021 (a Core insert renders just these).
            for data in ({"request_id": "apr-1"}, {"request_id": "apr-gone"}, None):
                c.execute(
                    insert(Notification.__table__).values(
                        user_id=user_id, kind="k", title="t", data=data, created_at=now
                    )
                )
        migrate.upgrade(engine)
        with engine.connect() as c:
            got = c.execute(select(Notification.model_id).order_by(Notification.id)).all()
        assert [r[0] for r in got] == [model_id, None, None]
    finally:
        engine.dispose()
