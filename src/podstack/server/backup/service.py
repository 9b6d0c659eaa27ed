"""Backup and restore: a consistent, verifiable snapshot of the database and the artifacts.

The database is dumped *logically* (one JSON-lines file per table) inside a single snapshot
transaction (REPEATABLE READ on PostgreSQL; a WAL read transaction on SQLite), so a backup
taken under load is consistent, and a backup can be restored into either database kind.
Artifacts are content-addressed and immutable, so copying every referenced blob after the
snapshot is consistent too; each blob is verified against its digest on the way out and on
the way back in. The store may be the local disk or an S3 bucket (only its methods are used):
a backup always holds the blobs themselves, so it restores into either kind.

Layout of a backup directory::

    manifest.json            format, time, schema revisions, per-table counts and sha256
    db/<table>.jsonl         rows
    blobs/sha256/<aa>/<digest>
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Table, func, insert, select, text
from sqlalchemy.engine import Engine

from podstack.errors import Conflict, IntegrityError, NotFound, ValidationFailed
from podstack.server.artifacts.store import CHUNK
from podstack.server.artifacts.store_factory import ArtifactStore
from podstack.server.db import migrate
from podstack.server.db.models_registry import metadata

FORMAT = "podstack-backup/1"
_BATCH = 1000
Progress = Callable[[str], None]


@dataclass
class BackupSummary:
    path: Path
    tables: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0
    revisions: list[str] = field(default_factory=list)


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(f"cannot serialise {type(v).__name__}")


# Tables whose sha256 names content that may not be stored yet: a direct upload in progress
# declares its digest before its bytes reach the bucket (server/transfers).
_NOT_BLOB_REFERENCES = frozenset({"artifact_uploads"})


def _digest_columns(table: Table) -> list[str]:
    if table.name in _NOT_BLOB_REFERENCES:
        return []
    return [c.name for c in table.columns if c.name == "sha256"]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _snapshot(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))


def backup(
    engine: Engine, store: ArtifactStore, dest: Path, progress: Progress | None = None
) -> BackupSummary:
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise Conflict(f"Backup destination {dest} is not empty.", {"path": str(dest)})
    (dest / "db").mkdir(parents=True, exist_ok=True)
    summary = BackupSummary(dest)
    digests: set[str] = set()
    files: dict[str, str] = {}
    with engine.connect().execution_options(podstack_readonly=True) as conn, conn.begin():
        _snapshot(conn)
        summary.revisions = sorted(
            r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))
        )
        for table in metadata.sorted_tables:
            path = dest / "db" / f"{table.name}.jsonl"
            dcols = _digest_columns(table)
            count = 0
            with open(path, "w", encoding="utf-8") as fh:
                pk = list(table.primary_key.columns)
                for row in conn.execute(select(table).order_by(*pk)).mappings():
                    fh.write(json.dumps(dict(row), default=_json_default) + "\n")
                    for c in dcols:
                        if row[c]:
                            digests.add(row[c])
                    count += 1
            summary.tables[table.name] = count
            files[path.name] = _sha256_file(path)
            if progress:
                progress(f"{table.name}: {count} rows")
    for digest in sorted(digests):
        if not store.exists(digest):
            raise IntegrityError(
                f"Artifact blob {digest} is referenced but missing from the "
                f"store ({store.uri}); the backup would be incomplete.",
                {"sha256": digest},
            )
        target = dest / "blobs" / "sha256" / digest[:2] / digest
        target.parent.mkdir(parents=True, exist_ok=True)
        # From the disk or the bucket alike; read back and checked below either way.
        store.materialize(digest, target)
        if _sha256_file(target) != digest:
            raise IntegrityError(
                f"Artifact blob {digest} is corrupted in the store.", {"sha256": digest}
            )
        summary.blobs += 1
        summary.blob_bytes += target.stat().st_size
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "revisions": summary.revisions,
        "tables": summary.tables,
        "files": files,
        "blobs": summary.blobs,
        "blob_bytes": summary.blob_bytes,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if progress:
        progress(f"{summary.blobs} artifact blobs ({summary.blob_bytes} bytes)")
    return summary


def read_manifest(src: Path) -> dict[str, Any]:
    path = Path(src) / "manifest.json"
    if not path.exists():
        raise NotFound(f"{src} is not a Podstack backup (no manifest.json).", {"path": str(src)})
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValidationFailed(
            f"Unsupported backup format {manifest.get('format')!r}.", {"expected": FORMAT}
        )
    return manifest


def verify(src: Path) -> dict[str, Any]:
    """Checks every file of a backup against its manifest without touching any database."""
    src = Path(src)
    manifest = read_manifest(src)
    for name, digest in manifest["files"].items():
        if _sha256_file(src / "db" / name) != digest:
            raise IntegrityError(f"Backup file db/{name} is corrupted.", {"file": name})
    count = 0
    blob_root = src / "blobs" / "sha256"
    if blob_root.exists():
        for sub in blob_root.iterdir():
            for blob in sub.iterdir():
                if _sha256_file(blob) != blob.name:
                    raise IntegrityError(
                        f"Backup blob {blob.name} is corrupted.", {"sha256": blob.name}
                    )
                count += 1
    if count != manifest["blobs"]:
        raise IntegrityError(f"Backup holds {count} blobs, manifest says {manifest['blobs']}.")
    return manifest


def _rows(path: Path, table: Table) -> Iterator[dict[str, Any]]:
    dt_cols = [
        c.name
        for c in table.columns
        if isinstance(c.type, DateTime) or isinstance(getattr(c.type, "impl", None), DateTime)
    ]
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            for c in dt_cols:
                if row.get(c) is not None:
                    row[c] = datetime.fromisoformat(row[c])
            yield row


def _is_empty(conn: Connection) -> bool:
    for table in metadata.sorted_tables:
        if conn.execute(select(func.count()).select_from(table)).scalar():
            return False
    return True


def restore(
    engine: Engine, store: ArtifactStore, src: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Restores into an EMPTY database (created/migrated here), then upgrades to head."""
    src = Path(src)
    manifest = verify(src)
    for rev in manifest["revisions"]:
        migrate.upgrade(engine, rev)
    with engine.begin() as conn:
        if not _is_empty(conn):
            raise Conflict(
                "The target database already holds data; restore needs an empty "
                "database (point PODSTACK_DATABASE_URL at a new one)."
            )
        for table in metadata.sorted_tables:
            path = src / "db" / f"{table.name}.jsonl"
            if not path.exists():
                continue
            batch: list[dict[str, Any]] = []
            for row in _rows(path, table):
                batch.append(row)
                if len(batch) >= _BATCH:
                    conn.execute(insert(table), batch)
                    batch = []
            if batch:
                conn.execute(insert(table), batch)
            if progress:
                progress(f"{table.name}: {manifest['tables'].get(table.name, 0)} rows")
        if conn.dialect.name == "postgresql":
            _reset_sequences(conn)
    blob_root = src / "blobs" / "sha256"
    if blob_root.exists():
        for sub in blob_root.iterdir():
            for blob in sub.iterdir():
                if not store.exists(blob.name):
                    stored = store.put_file(blob)
                    if stored.sha256 != blob.name:  # verify() ran, but the disk may lie
                        raise IntegrityError(f"Blob {blob.name} changed while restoring.")
    migrate.upgrade(engine)
    if progress:
        progress(f"{manifest['blobs']} artifact blobs restored")
    return manifest


def _reset_sequences(conn: Connection) -> None:
    """Inserted explicit ids leave PostgreSQL sequences behind; move them past the max."""
    for table in metadata.sorted_tables:
        for col in table.primary_key.columns:
            if len(table.primary_key.columns) == 1 and _is_integer(col):
                seq = conn.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": col.name}
                ).scalar()
                if seq:
                    conn.execute(
                        text(
                            f'SELECT setval(:s, COALESCE((SELECT MAX("{col.name}") FROM '
                            f'"{table.name}"), 0) + 1, false)'
                        ),
                        {"s": seq},
                    )


def _is_integer(col: Any) -> bool:
    try:
        return col.type.python_type is int
    except NotImplementedError:
        return False


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


__all__ = ["BackupSummary", "backup", "dir_size", "read_manifest", "restore", "verify"]
