"""Every artifact query lives here.

Directory-style queries ("everything under ``d/``") are byte-order range scans on the primary
key: under ``d/`` means ``d/ <= path < d0`` because ``'0'`` is the character right after
``'/'``. That only holds for byte-wise ordering, so PostgreSQL compares with ``COLLATE "C"``
(its default collation may ignore punctuation); SQLite's default ``BINARY`` already is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from podstack.server.artifacts.models import ArtifactFile
from podstack.server.db.base import utcnow


def _path(s: Session) -> Any:
    if s.get_bind().dialect.name == "postgresql":
        return ArtifactFile.path.collate("C")
    return ArtifactFile.path


def under(s: Session, prefix: str) -> list[ColumnElement[bool]]:
    """Conditions selecting the files strictly inside directory ``prefix`` ("" = the root)."""
    if not prefix:
        return []
    col = _path(s)
    return [col >= prefix + "/", col < prefix + "0"]


def get_file(s: Session, run_id: str, path: str) -> ArtifactFile | None:
    return s.get(ArtifactFile, (run_id, path))


def files_at(s: Session, run_id: str, paths: Sequence[str]) -> list[ArtifactFile]:
    if not paths:
        return []
    q = select(ArtifactFile).where(
        ArtifactFile.run_id == run_id, ArtifactFile.path.in_(list(paths))
    )
    return list(s.scalars(q))


def first_under(s: Session, run_id: str, prefix: str) -> ArtifactFile | None:
    q = select(ArtifactFile).where(ArtifactFile.run_id == run_id, *under(s, prefix)).limit(1)
    return s.scalar(q)


def files_under(
    s: Session,
    run_id: str,
    prefix: str,
    *,
    lower: str | None = None,
    inclusive: bool = False,
    limit: int | None = None,
) -> list[ArtifactFile]:
    """Files under ``prefix`` in byte order, optionally starting at/after ``lower``."""
    col = _path(s)
    q = select(ArtifactFile).where(ArtifactFile.run_id == run_id, *under(s, prefix))
    if lower is not None:
        q = q.where(col >= lower if inclusive else col > lower)
    q = q.order_by(col)
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))


def upsert_file(s: Session, run_id: str, path: str, size: int, sha256: str) -> None:
    """Insert or overwrite in one statement, so two concurrent uploads of the same path end
    with one of them recorded instead of a primary-key error."""
    values = {
        "run_id": run_id,
        "path": path,
        "size": size,
        "sha256": sha256,
        "created_at": utcnow(),
    }
    dialect = s.get_bind().dialect.name
    ins = pg_insert(ArtifactFile) if dialect == "postgresql" else sqlite_insert(ArtifactFile)
    stmt = ins.values(**values).on_conflict_do_update(
        index_elements=[ArtifactFile.run_id, ArtifactFile.path],
        set_={"size": size, "sha256": sha256, "created_at": values["created_at"]},
    )
    s.execute(stmt)
    # The identity map may hold the old row (read for the audit "before"); refresh it.
    existing = s.identity_map.get(s.identity_key(ArtifactFile, (run_id, path)))  # type: ignore[arg-type]
    if existing is not None:
        s.expire(existing)


def _manifest_statements(col: Any) -> tuple[Any, Any]:
    """(whole run, path range) selects of the plain columns a manifest needs."""
    c = ArtifactFile.__table__.c
    whole = select(c.path, c.size, c.sha256).where(c.run_id == bindparam("run_id"))
    ranged = whole.where(col >= bindparam("lo"), col < bindparam("hi"))
    return whole.order_by(col), ranged.order_by(col)


# Built once (the manifest runs on every version created); PostgreSQL compares byte-wise.
_MANIFEST = {
    "postgresql": _manifest_statements(ArtifactFile.__table__.c.path.collate("C")),
    "sqlite": _manifest_statements(ArtifactFile.__table__.c.path),
}


def file_or_under(s: Session, run_id: str, prefix: str) -> list[Row[tuple[str, int, str]]]:
    """(path, size, sha256) of the file at ``prefix`` and of the files under directory
    ``prefix`` ("" = the whole run), in byte order, as plain rows: one range scan of the
    primary key, ``prefix <= path < prefix + "0"``. That range also holds siblings like
    ``prefix.txt`` ('.' sorts before '/'); they are dropped here."""
    # Plain Core on the connection (Session.execute's ORM dispatch costs more than this
    # query); flushed first, as an ORM query would be.
    s.flush()
    # Not narrowed by the read filter: service.manifest, the only caller, checks the run first
    # when reads are restricted.
    conn = s.connection()
    whole, ranged = _MANIFEST.get(conn.dialect.name, _MANIFEST["sqlite"])
    if not prefix:
        return list(conn.execute(whole, {"run_id": run_id}))
    rows = conn.execute(ranged, {"run_id": run_id, "lo": prefix, "hi": prefix + "0"})
    inside = prefix + "/"
    return [r for r in rows if r[0] == prefix or r[0].startswith(inside)]


def distinct_digests(s: Session) -> set[str]:
    return set(s.scalars(select(ArtifactFile.sha256).distinct()))
