"""A database populated at the first schema revision upgrades to head without loss, and
every migration downgrades cleanly."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text

from podstack.server.db import migrate
from podstack.server.db.session import make_engine

FIRST = "0001_foundation"


def _experiment_and_run(c: Connection) -> None:
    """Experiment ``exp-1`` with finished run ``run-1``, as rows of the first schema (their
    columns are the same at every revision since)."""
    c.execute(
        text(
            "INSERT INTO experiments (id, name, tags, archived, created_at, updated_at) "
            "VALUES ('exp-1', 'e', '{}', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
    )
    c.execute(
        text(
            "INSERT INTO runs (id, experiment_id, status, start_time, updated_at) "
            "VALUES ('run-1', 'exp-1', 'FINISHED', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
    )


def test_upgrade_from_first_revision_keeps_data(scratch_database_url: str) -> None:
    engine = make_engine(scratch_database_url)
    migrate.upgrade(engine, FIRST)
    assert migrate.current_revisions(engine) == {FIRST}
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO users (username, role, disabled, failed_logins, created_at) "
                "VALUES ('alice', 'editor', false, 0, CURRENT_TIMESTAMP)"
            )
        )
        _experiment_and_run(c)
        c.execute(text("INSERT INTO params (run_id, key, value) VALUES ('run-1', 'lr', '0.1')"))
        c.execute(
            text(
                "INSERT INTO metrics (run_id, key, value, step, timestamp) "
                "VALUES ('run-1', 'acc', 0.9, 1, CURRENT_TIMESTAMP)"
            )
        )
        c.execute(
            text(
                "INSERT INTO artifact_files (run_id, path, size, sha256, created_at) "
                "VALUES ('run-1', 'model.pt', 3, :d, CURRENT_TIMESTAMP)"
            ),
            {"d": "a" * 64},
        )
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT username FROM users")).scalars().all() == ["alice"]
        assert c.execute(text("SELECT value FROM params")).scalar() == "0.1"
        assert c.execute(text("SELECT value FROM metrics")).scalar() == pytest.approx(0.9)
        assert c.execute(text("SELECT path FROM artifact_files")).scalar() == "model.pt"
    engine.dispose()


def test_downgrade_to_base_and_back(scratch_database_url: str) -> None:
    engine = make_engine(scratch_database_url)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert migrate.current_revisions(engine) == set()
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()


def test_metric_extremes_are_filled_for_existing_runs(scratch_database_url: str) -> None:
    """0020 adds each (run, key)'s min and max to latest_metrics, computed from the history
    already stored (NaN points, stored as NULL, skipped)."""
    engine = make_engine(scratch_database_url)
    migrate.upgrade(engine, "0019_signing")
    with engine.begin() as c:
        _experiment_and_run(c)
        for step, value in enumerate([0.4, 0.9, None, 0.2, 0.5]):
            c.execute(
                text(
                    "INSERT INTO metrics (run_id, key, value, step, timestamp) "
                    "VALUES ('run-1', 'acc', :v, :s, CURRENT_TIMESTAMP)"
                ),
                {"v": value, "s": step},
            )
        c.execute(
            text(
                "INSERT INTO latest_metrics (run_id, key, value, step, timestamp) "
                "VALUES ('run-1', 'acc', 0.5, 4, CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(engine)
    with engine.connect() as c:
        row = c.execute(text("SELECT value, min_value, max_value FROM latest_metrics")).one()
    assert tuple(row) == pytest.approx((0.5, 0.2, 0.9))
    migrate.downgrade(engine, "0019_signing")
    migrate.upgrade(engine)
    engine.dispose()
