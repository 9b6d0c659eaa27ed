"""The registry's manifest lookup: one range query that answers both "the file at this path"
and "the files under this directory", looking the run up only when nothing matched."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import event

from podstack.errors import NotFound
from podstack.schemas import tracking as tsch
from podstack.server.artifacts import service
from podstack.server.artifacts.store import StoredBlob
from podstack.server.db.session import Database
from podstack.server.tracking import service as tracking


def _run_with(db: Database, paths: list[str]) -> str:
    with db.session() as s:
        run_id = tracking.create_run(s, "admin", tsch.RunCreate(experiment_id="mf")).id
        for p in paths:
            blob = StoredBlob(hashlib.sha256(p.encode()).hexdigest(), len(p))
            service.record_upload(s, "admin", run_id, p, blob)
    return run_id


def _queries(db: Database) -> list[str]:
    seen: list[str] = []

    def before(_c: object, _cur: object, stmt: str, *_a: object) -> None:
        if not stmt.lstrip().upper().startswith("BEGIN"):
            seen.append(stmt)

    event.listen(db.engine, "before_cursor_execute", before)
    return seen


# Siblings that sort inside the scanned range ('-' and '.' come before '/').
PATHS = ["model.pt", "model.pt-old", "model.pt.bak", "ckpt-2/x", "ckpt.txt", "ckpt/a", "ckpt/b/c"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("model.pt", ["model.pt"]),
        ("model.pt.bak", ["model.pt.bak"]),
        ("ckpt", ["ckpt/a", "ckpt/b/c"]),
        ("ckpt/b", ["ckpt/b/c"]),
        ("", sorted(PATHS)),
    ],
)
def test_exact_file_or_directory_without_neighbours(
    db: Database, path: str, expected: list[str]
) -> None:
    run_id = _run_with(db, PATHS)
    with db.session(readonly=True) as s:
        seen = _queries(db)
        assert [e.path for e in service.manifest(s, run_id, path)] == expected
    # A match proves the run exists (the file rows reference it): no separate run lookup.
    assert len(seen) == 1, seen
    assert "FROM runs" not in seen[0]


def test_a_miss_says_whether_the_run_or_the_path_is_missing(db: Database) -> None:
    run_id = _run_with(db, ["model.pt", "model.pt.bak"])
    with db.session(readonly=True) as s:
        with pytest.raises(NotFound) as err:
            service.manifest(s, "run-missing", "model.pt")
        assert err.value.message == "Run 'run-missing' does not exist."
        with pytest.raises(NotFound) as err:
            service.manifest(s, run_id, "model")  # a prefix of a name is not a directory
        assert "has no artifacts at 'model'" in err.value.message
        assert err.value.details["available"] == ["model.pt", "model.pt.bak"]
