"""Backends the comparison runs on: a SQLite file in a temp dir, or a fresh PostgreSQL database
(127.0.0.1:5432, trust auth, user postgres) created for one server and dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")


@dataclass(frozen=True)
class Backend:
    kind: str  # "sqlite" | "postgresql"
    # The same database spelled for each product's driver.
    podstack_url: str
    mlflow_url: str


def _admin_conn():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    )


def postgres_available() -> bool:
    try:
        with _admin_conn():
            return True
    except Exception:
        return False


def postgres_version() -> str | None:
    try:
        with _admin_conn() as c:
            return str(c.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except Exception:
        return None


def sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


@contextmanager
def backend(kind: str, workdir: Path, label: str) -> Iterator[Backend]:
    """A brand-new, empty database for one server; PostgreSQL databases are dropped after."""
    if kind == "sqlite":
        path = workdir / f"{label}.db"
        yield Backend(kind, f"sqlite:///{path}", f"sqlite:///{path}")
        return
    if kind != "postgresql":
        raise ValueError(f"unknown backend {kind!r}; use sqlite or postgresql")
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}".lower()
    with _admin_conn() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    where = f"{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    try:
        # MLflow through psycopg2, spelled out: SQLAlchemy 2.1 maps a bare postgresql:// to
        # psycopg 3, which the MLflow venv does not have.
        yield Backend(kind, f"postgresql+psycopg://{where}", f"postgresql+psycopg2://{where}")
    finally:
        with _admin_conn() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
