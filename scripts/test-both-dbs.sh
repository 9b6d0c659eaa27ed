#!/usr/bin/env bash
# `make test`: the SQLite pass and the PostgreSQL pass side by side. A good part of the SQLite
# pass waits on processes its tests start (model servers, a browser, S3, Ray, an MLflow server)
# while the PostgreSQL pass is all CPU, so together they fill the two cores that one pass after
# the other left idle about a third of the time. The SQLite pass streams to the terminal; the
# PostgreSQL pass writes test-artifacts/pytest-postgresql.log, printed when both are done. Exit
# status: failure if either pass failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SQLITE_WORKERS=${SQLITE_WORKERS:-3}
PG_WORKERS=${PG_WORKERS:-2}
mkdir -p test-artifacts
pg_log=test-artifacts/pytest-postgresql.log

PODSTACK_TEST_DB=postgresql "$BIN/pytest" -n "$PG_WORKERS" --dist worksteal -q ${PYTEST_ARGS:-} \
    >"$pg_log" 2>&1 &
pg_pid=$!
# Stop the background pass too if this script is interrupted.
trap 'kill "$pg_pid" 2>/dev/null' INT TERM

echo "== SQLite pass (PostgreSQL pass running beside it, output in $pg_log)"
PODSTACK_TEST_DB=sqlite "$BIN/pytest" -n "$SQLITE_WORKERS" --dist worksteal -q ${PYTEST_ARGS:-}
sqlite_rc=$?
wait "$pg_pid"
pg_rc=$?
echo
echo "== PostgreSQL pass"
cat "$pg_log"
echo
echo "== SQLite pass: exit $sqlite_rc; PostgreSQL pass: exit $pg_rc"
[ "$sqlite_rc" -eq 0 ] && [ "$pg_rc" -eq 0 ]
