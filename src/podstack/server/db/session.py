"""Engine creation and the one place transactions are committed or rolled back."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from podstack.errors import ServiceUnavailable, ValidationFailed
from podstack.server import file_modes

SQLITE_BUSY_TIMEOUT_MS = 30_000
log = logging.getLogger("podstack.server.db")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or path == ":memory:":
            # In-memory databases live in one connection; SQLAlchemy picks a pool for that.
            engine = create_engine(url, connect_args={"check_same_thread": False})
            _configure_sqlite(engine)
            return engine
        # Created 0600 (parents 0700) before SQLite opens it: the database holds password and
        # token hashes, and SQLite gives its -wal/-shm files the database file's mode.
        file_modes.ensure_private_file(Path(path))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=20,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=20,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _rec: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start (see below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that later upgrades
        # to a write gets SQLITE_BUSY immediately (the busy handler is not consulted), which
        # would surface as random "database is locked" errors under concurrency.
        if conn.get_execution_options().get("podstack_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


_EFFECTS = "podstack_on_commit"
_READY = "podstack_on_commit_ready"
_DATABASE = "podstack_database"
# Who the session acts for (a ``Principal``): set by ``Database.session(principal=...)`` from
# the request contexts (``deps.Ctx``, the UI's ``WebCtx``); read by the permission checks and
# the read filter (permissions/read_filter.py). Absent: the server itself (background loops).
PRINCIPAL_INFO = "podstack_principal"


def on_commit(session: Session, fn: Callable[[], None]) -> None:
    """Runs ``fn`` once this session's transaction has committed (start a model server, wake
    the scheduler): never for work that was rolled back, and never when the scope commits only
    to keep what a refusal opened (``keep_writes``, see ``Database.session``)."""
    session.info.setdefault(_EFFECTS, []).append(fn)


def database_of(session: Session) -> Database | None:
    """The ``Database`` whose scope opened this session (what an after-commit effect acts on);
    None for a session opened outside ``Database.session``."""
    return session.info.get(_DATABASE)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    effects = session.info.pop(_EFFECTS, [])
    if _DATABASE in session.info:
        # The scope runs them once the session is closed, its connection back in the pool (a
        # stop waits up to 30 s for the model server to go).
        session.info.setdefault(_READY, []).extend(effects)
    else:
        _run(effects)


def _run(effects: list[Callable[[], None]]) -> None:
    for fn in effects:
        try:
            fn()
        except Exception:
            # The data is committed; a failed side effect must not turn the answer into an
            # error (the background loops converge what a missed nudge left behind).
            log.exception("after-commit side effect failed")


@event.listens_for(Session, "after_rollback")
def _drop_effects(session: Session) -> None:
    session.info.pop(_EFFECTS, None)


class Database:
    """Owns the engine and hands out sessions; commit/rollback happen only here."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        # Copied into every session's ``info``: what in-transaction code (event sinks) may need
        # from the app that owns this database, e.g. the server's signing key.
        self.info: dict[str, Any] = {}
        self.engine = make_engine(url, pool_size=pool_size)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(
            self.engine.execution_options(podstack_readonly=True), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, readonly: bool = False, principal: Any = None) -> Iterator[Session]:
        factory = self._read if readonly else self._write
        session = factory()
        session.info.update(self.info)
        session.info[_DATABASE] = self
        if principal is not None:
            session.info[PRINCIPAL_INFO] = principal
        try:
            yield session
            if readonly:
                session.rollback()
            else:
                session.commit()
        except DataError as exc:
            session.rollback()
            # The database refused a value the request carried (PostgreSQL: a NUL character
            # in text, a number out of range): the caller's input, so a 422 saying which
            # problem, never a 500. The driver's first line names it without the SQL.
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
            raise ValidationFailed(
                f"The database refused a value in this request: {reason}.",
                {"reason": reason},
            ) from exc
        except (OperationalError, DBAPIError) as exc:
            session.rollback()
            if _is_connection_problem(exc):
                raise ServiceUnavailable(
                    "The database is unavailable; retry shortly.",
                    {"reason": type(exc.orig).__name__ if exc.orig else "unknown"},
                ) from exc
            if _is_transient_conflict(exc):
                # The database aborted this transaction to let a concurrent one through
                # (deadlock, serialization failure, lock wait timeout): nothing was written
                # and the same request can simply be retried. Logged, so operators can see
                # lock-order problems without a 500 reaching clients.
                log.warning("transaction aborted by the database: %s", str(exc.orig)[:300])
                raise ServiceUnavailable(
                    "The database aborted this request to resolve a conflict with a concurrent "
                    "one; nothing was changed. Retry it.",
                    {"reason": type(exc.orig).__name__ if exc.orig else "unknown"},
                ) from exc
            raise
        except BaseException as exc:
            if getattr(exc, "keep_writes", False) and not readonly:
                # A refusal that opened something to keep (errors.ApprovalPending: the approval
                # request for a change that needs review) commits what was written so far; the
                # side effects of the refused change itself do not happen.
                session.info.pop(_EFFECTS, None)
                session.commit()
            else:
                session.rollback()
            raise
        finally:
            session.info.pop(_EFFECTS, None)
            session.close()
            _run(session.info.pop(_READY, []))

    def dispose(self) -> None:
        self.engine.dispose()


# SQLSTATEs of transactions PostgreSQL aborts so that others can proceed.
_TRANSIENT_SQLSTATES = ("40001", "40P01", "55P03")  # serialization, deadlock, lock timeout


def _is_transient_conflict(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    # SQLite: a writer waited out the whole busy timeout.
    return isinstance(exc.orig, sqlite3.OperationalError) and "database is locked" in str(exc.orig)


def _is_connection_problem(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower() if exc.orig is not None else ""
    return any(
        s in text
        for s in (
            "connection refused",
            "server closed the connection",
            "terminating connection",
            "could not connect",
            "connection is closed",
            "the database system is",
        )
    )
