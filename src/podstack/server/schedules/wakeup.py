"""Waking the scheduler once a change that gives it work now (Run now, a cancel) is committed.

Services call ``after_commit``; the session scope runs the wake-up only if the transaction is
kept (``db.session.on_commit``), so entry points never need to know about the scheduler. Kept
apart from ``scheduler.py`` so the services can import it without an import circle."""

from __future__ import annotations

import weakref
from typing import Protocol

from sqlalchemy.orm import Session

from podstack.server.db.session import Database, database_of, on_commit


class Wakeable(Protocol):
    db: Database

    def wake(self) -> None: ...


_SCHEDULERS: weakref.WeakSet[Wakeable] = weakref.WeakSet()  # type: ignore[type-var]


def register(scheduler: Wakeable) -> None:
    _SCHEDULERS.add(scheduler)


def after_commit(s: Session) -> None:
    """Runs the next tick of every scheduler of this process on this database now, instead of at
    the next interval, once ``s`` commits."""
    db = database_of(s)
    if db is not None:
        on_commit(s, lambda: _wake(db))


def _wake(db: Database) -> None:
    for scheduler in list(_SCHEDULERS):
        if scheduler.db is db:
            scheduler.wake()
