"""The session scope's ``on_commit``: side effects run only once the data they follow is kept."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from podstack.errors import ApprovalPending, Conflict
from podstack.server.db.session import Database, on_commit


def _write(s: object) -> None:
    s.execute(text("UPDATE users SET username = username"))  # type: ignore[attr-defined]


def test_runs_after_commit(db: Database) -> None:
    ran: list[str] = []
    with db.session() as s:
        _write(s)
        on_commit(s, lambda: ran.append("a"))
        on_commit(s, lambda: ran.append("b"))
        assert ran == []  # not before the commit
    assert ran == ["a", "b"]


def test_dropped_on_rollback(db: Database) -> None:
    ran: list[str] = []
    with pytest.raises(Conflict), db.session() as s:
        _write(s)
        on_commit(s, lambda: ran.append("x"))
        raise Conflict("refused")
    assert ran == []
    with db.session() as s:  # a later scope does not inherit the dropped effect
        _write(s)
    assert ran == []


def test_dropped_when_a_refusal_keeps_its_writes(db: Database) -> None:
    ran: list[str] = []
    with pytest.raises(ApprovalPending), db.session() as s:
        _write(s)
        on_commit(s, lambda: ran.append("x"))
        raise ApprovalPending("needs review", {"request_id": "r1"})
    assert ran == []


def test_a_failing_effect_does_not_undo_the_commit(db: Database) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("runtime unavailable")

    with db.session() as s:
        _write(s)
        on_commit(s, boom)
        on_commit(s, lambda: ran.append("after"))
    assert ran == ["after"]


def test_runs_once_the_session_is_closed(db: Database) -> None:
    # A stop waits up to 30 s in its effect: the session must not hold its connection then.
    seen: list[bool] = []
    with db.session() as s:
        _write(s)
        on_commit(s, lambda: seen.append(s.in_transaction()))
    assert seen == [False]
