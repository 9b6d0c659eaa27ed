"""Idempotency keys: a request sent again with the same ``Idempotency-Key`` is answered with
the first result instead of being applied twice (the SDK retries after connection errors and
5xx answers, when it cannot know whether the server applied the first attempt).

How a key stays correct under a crash:

- The key row is inserted by a ``before_commit`` hook in the *same transaction* as the
  request's effects (the first write transaction of the request that changed anything), so
  after any crash either both exist or neither does. A repeat whose effects would commit again
  hits the row's primary key (principal, key), its whole transaction rolls back, and the first
  result is answered instead: nothing is ever applied twice, even for two attempts in flight
  at once.
- Answers that can be rebuilt from the row are not stored at all (no second transaction on
  the hot paths): the row records, in-transaction, the request's audit rows, from which
  ``REBUILDERS`` answer again for create run and create version (the object as it is now),
  metric batches (the count, from the repeated body); routes answering 204 answer 204 again.
- Any other answer (status, content type, body) is stored just after, in a second small
  transaction, before it is sent. A repeat finding the row answers with it. If the server
  died between the two, the repeat gets 409 ``IDEMPOTENCY_RESULT_LOST`` saying the request
  *was* applied once (never a second application).

Rows are kept for ``RETENTION`` (24 h) and deleted afterwards (background loop, and on write).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.dml import Insert

from podstack.errors import Conflict
from podstack.server.db.base import utcnow
from podstack.server.db.session import Database
from podstack.server.idempotency.models import IdempotencyKey

log = logging.getLogger("podstack.server.idempotency")

HEADER = "idempotency-key"
RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# Responses above this are not stored (mutations answer small JSON; a repeat then gets 409).
MAX_STORED_BODY = 1024 * 1024
# Request bodies kept for rebuilding a lost answer (metric batches); larger ones are not.
MAX_KEPT_REQUEST = 1024 * 1024
# A repeat finding a committed row without a response waits for the first attempt to store it
# (within milliseconds, normally): as long as this process is still handling that attempt, or
# for RESPONSE_WAIT after the row's commit if another process (a replica) may be.
RESPONSE_WAIT = timedelta(seconds=1)
IN_FLIGHT_WAIT_SECONDS = 30.0
CLEANUP_EVERY_SECONDS = 600.0
# Writes that do not make a request "applied": the token's last-used stamp written while
# authenticating the request.
_IGNORED_TABLES = frozenset({"api_tokens"})


class KeyAlreadyApplied(Conflict):
    """Raised inside the repeat's transaction (rolled back); the middleware then answers
    with the first attempt's result."""

    code = "IDEMPOTENCY_KEY_IN_USE"


@dataclass
class Pending:
    """The idempotent request being handled, visible to the database hooks (a contextvar,
    copied into the worker threads that run the endpoint)."""

    key: str
    method: str
    path: str
    query: str
    scope: dict[str, Any]
    body_hash: Any = field(default_factory=hashlib.sha256)
    body: bytearray | None = field(default_factory=bytearray)
    # A write (other than the token's last-used stamp) ran in the current transaction.
    effects: bool = False
    # [action, target_type, target_id] of the audit rows written in the current transaction.
    audit: list[list[Any]] = field(default_factory=list)
    recorded: bool = False
    conflict: bool = False
    closed: bool = False

    def feed(self, chunk: bytes) -> None:
        self.body_hash.update(chunk)
        if self.body is not None:
            if len(self.body) + len(chunk) > MAX_KEPT_REQUEST:
                self.body = None
            else:
                self.body += chunk

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for part in (self.method, self.path, self.query, self.body_hash.hexdigest()):
            h.update(part.encode())
            h.update(b"\n")
        return h.hexdigest()

    def principal(self) -> str | None:
        """Username of the authenticated caller (set by deps._ctx), None before that."""
        state = self.scope.get("state")
        p = state.get("principal") if isinstance(state, dict) else None
        return getattr(p, "username", None)


current: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "podstack_idempotency", default=None
)


# ----------------------------------------------------------------------------- DB hooks
def _active() -> Pending | None:
    p = current.get()
    if p is None or p.closed or p.recorded:
        return None
    return p


_DML = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|MERGE|COPY)\b", re.IGNORECASE)


@event.listens_for(Engine, "before_cursor_execute")
def _on_statement(
    _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
) -> None:
    # Core statements too (audit rows, metric batches go through session.connection()), and
    # every ORM flush: any write but the token's last-used stamp makes the request "applied".
    p = _active()
    if p is None or not _DML.match(statement):
        return
    head = statement[:80].lower()
    if not any(t in head for t in _IGNORED_TABLES):
        p.effects = True


@event.listens_for(Engine, "before_execute")
def _on_execute(_conn: Any, clause: Any, multiparams: Any, params: Any, _opts: Any) -> None:
    # What the request did, as its audit rows say (every mutation writes one, in its own
    # transaction): enough to rebuild an answer lost in a crash.
    p = _active()
    if p is None or not isinstance(clause, Insert) or clause.table.name != "audit_events":
        return
    rows = multiparams if multiparams else [params]
    for row in rows if isinstance(rows, list | tuple) else [rows]:
        if isinstance(row, dict):
            p.audit.append([row.get("action"), row.get("target_type"), row.get("target_id")])


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous: SessionTransaction) -> None:
    p = _active()
    if p is not None and not previous.nested and previous.parent is None:
        # The request's transaction rolled back (not just a savepoint): nothing of it counts.
        p.effects = False
        p.audit.clear()


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    p = _active()
    if p is None or session.in_nested_transaction():
        return  # a savepoint's release: the key goes with the outermost commit
    session.flush()
    if not p.effects:
        return
    principal = p.principal()
    if principal is None:
        return
    session.add(
        IdempotencyKey(
            principal=principal,
            key=p.key,
            method=p.method,
            path=p.path[:4000],
            fingerprint=p.fingerprint(),
            created=[list(a) for a in p.audit],
            created_at=utcnow(),
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:
        # Another attempt with this key already committed its effects: this one must not.
        p.conflict = True
        raise KeyAlreadyApplied(
            "A request with this Idempotency-Key was already applied; its result is answered.",
            {"idempotency_key": p.key},
        ) from exc
    p.recorded = True
    IN_FLIGHT.add((principal, p.key))


# ----------------------------------------------------------------------------- store
@dataclass
class Stored:
    fingerprint: str
    created: list[Any]
    created_at: Any
    status: int | None
    content_type: str | None
    body: str | None


def lookup(db: Database, principal: str, key: str) -> Stored | None:
    with db.session(readonly=True) as s:
        row = s.get(IdempotencyKey, (principal, key))
        if row is None or row.created_at < utcnow() - RETENTION:
            return None
        return Stored(
            row.fingerprint,
            list(row.created or []),
            row.created_at,
            row.status,
            row.content_type,
            row.body,
        )


def wait_for_response(
    db: Database, principal: str, key: str, rebuildable: bool = False
) -> Stored | None:
    """The stored row, waiting briefly for a first attempt that committed but has not
    stored its response yet (not for answers rebuilt from the row: it is complete once
    committed)."""
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    while True:
        found = lookup(db, principal, key)
        if found is None or found.status is not None or rebuildable:
            return found
        here = (principal, key) in IN_FLIGHT
        if not here and utcnow() - found.created_at > RESPONSE_WAIT:
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# (principal, key) of requests committed by this process whose answer is not stored yet.
IN_FLIGHT: set[tuple[str, str]] = set()
_last_cleanup = 0.0
_cleanup_lock = threading.Lock()


WITHHELD = "withheld"
_SECRET_KEYS = ("token", "secret", "password")


def _holds_secret(value: Any) -> bool:
    """Whether a JSON answer carries a string under a key naming a secret (a new API token,
    a webhook signing secret): such answers are not kept at rest."""
    if isinstance(value, dict):
        return any(
            (isinstance(v, str) and v and any(k in str(key).lower() for k in _SECRET_KEYS))
            or _holds_secret(v)
            for key, v in value.items()
        )
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def store_response(
    db: Database, principal: str, key: str, status: int, content_type: str | None, body: bytes
) -> None:
    text: str | None
    try:
        text = body.decode("utf-8") if len(body) <= MAX_STORED_BODY else None
    except UnicodeDecodeError:
        text = None
    if text and content_type and "json" in content_type:
        try:
            if _holds_secret(json.loads(text)):
                text, content_type = None, WITHHELD
        except ValueError:
            pass
    with db.session() as s:
        row = s.get(IdempotencyKey, (principal, key))
        if row is not None and (text is not None or content_type == WITHHELD):
            row.status = status
            row.content_type = content_type
            row.body = text
    _maybe_cleanup(db)


def _maybe_cleanup(db: Database) -> None:
    global _last_cleanup
    now = time.monotonic()
    if now - _last_cleanup < CLEANUP_EVERY_SECONDS:
        return
    with _cleanup_lock:
        if now - _last_cleanup < CLEANUP_EVERY_SECONDS:
            return
        _last_cleanup = now
    try:
        cleanup(db)
    except Exception:
        log.warning("idempotency key cleanup failed", exc_info=True)


def cleanup(db: Database) -> int:
    """Deletes keys older than ``RETENTION``; returns how many."""
    with db.session() as s:
        result = s.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - RETENTION)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def count(db: Database) -> int:
    with db.session(readonly=True) as s:
        return len(s.scalars(select(IdempotencyKey.key)).all())


# ----------------------------------------------------------------------------- rebuild
# "module:endpoint function" -> fn(session, created, path_params, query, request body) ->
# (status, JSON-able body). Used only when the server died after committing a request but before
# storing its answer.
Rebuilder = Callable[
    [Session, list[Any], dict[str, Any], dict[str, str], bytes | None], tuple[int, Any]
]
REBUILDERS: dict[str, Rebuilder] = {}


def rebuilder(endpoint: str) -> Callable[[Rebuilder], Rebuilder]:
    def register(fn: Rebuilder) -> Rebuilder:
        REBUILDERS[endpoint] = fn
        return fn

    return register


def _targets(created: list[Any], action: str) -> list[str]:
    return [str(target) for act, _type, target in created if act == action]


@rebuilder("podstack.server.tracking.endpoints:create_run")
def _run(s: Session, created: list[Any], _p: dict[str, Any], _q: dict[str, str], _b: Any):  # type: ignore[no-untyped-def]
    from podstack.server.tracking import service as tracking

    (run_id,) = _targets(created, "run.create")
    return 201, tracking.run_view(s, tracking.get_run(s, run_id)).model_dump(mode="json")


@rebuilder("podstack.server.registry.endpoints:create_version")
def _version(s: Session, created: list[Any], _p: dict[str, Any], _q: dict[str, str], _b: Any):  # type: ignore[no-untyped-def]
    from podstack.server.registry import service as registry
    from podstack.server.registry import views

    (ref,) = _targets(created, "version.create")
    name, _, number = ref.rpartition("/")
    m, mv = registry.get_version(s, name, number)
    return 201, views.version_view(s, m, mv).model_dump(mode="json")


@rebuilder("podstack.server.tracking.endpoints:log_metrics")
def _metrics(s: Session, _c: list[Any], _p: dict[str, Any], _q: dict[str, str], body: Any):  # type: ignore[no-untyped-def]
    if body is None:
        raise LookupError("request body not kept")
    data = json.loads(body)
    n = len(data.get("metrics") or {}) + len(data.get("points") or [])
    return 200, {"logged": n}
