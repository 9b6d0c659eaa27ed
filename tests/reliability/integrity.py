"""Whole-deployment consistency checks run after every injected fault.

``problems(database_url, artifacts)`` returns human-readable findings (empty = consistent):
- rows whose foreign key points at nothing (orphans), for every foreign key of the schema;
- database rows naming content the store does not hold, or holds at another size;
- store blobs whose bytes do not hash to their name (a half-written blob made visible);
- model rows whose version counter is behind a version that exists.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import create_engine, text

from podstack.server.db.models_registry import metadata

# Tables whose rows point at blobs: (table, size column).
BLOB_TABLES = (("artifact_files", "size"), ("version_files", "size"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def problems(database_url: str, artifacts: Path) -> list[str]:
    found: list[str] = []
    engine = create_engine(database_url)
    try:
        with engine.connect() as c:
            for table in metadata.sorted_tables:
                for fk in table.foreign_keys:
                    child, parent = fk.parent, fk.column
                    n = c.execute(
                        text(
                            f'SELECT count(*) FROM "{table.name}" ch WHERE ch."{child.name}" IS '
                            f'NOT NULL AND NOT EXISTS (SELECT 1 FROM "{parent.table.name}" p '
                            f'WHERE p."{parent.name}" = ch."{child.name}")'
                        )
                    ).scalar_one()
                    if n:
                        found.append(f"{n} orphan row(s) in {table.name}.{child.name}")
            for table, size_col in BLOB_TABLES:
                rows = c.execute(text(f'SELECT sha256, "{size_col}" FROM "{table}"')).all()
                for sha, size in rows:
                    blob = artifacts / "blobs" / "sha256" / sha[:2] / sha
                    if not blob.is_file():
                        found.append(f"{table} references missing blob {sha}")
                    elif blob.stat().st_size != size:
                        found.append(f"{table} says {sha} has {size} bytes, store has other")
            lagging = c.execute(
                text(
                    "SELECT m.name FROM registered_models m JOIN model_versions v "
                    "ON v.model_id = m.id GROUP BY m.name, m.next_version "
                    "HAVING max(v.version) >= m.next_version"
                )
            ).scalars()
            found += [f"model {n} would hand out a version number again" for n in lagging]
    finally:
        engine.dispose()
    blobs = artifacts / "blobs" / "sha256"
    for blob in blobs.glob("*/*") if blobs.exists() else []:
        if _sha256(blob) != blob.name:
            found.append(f"blob {blob.name} does not hash to its name (partial or corrupt)")
    return found
