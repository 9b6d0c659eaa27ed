"""Shared fixtures: a migrated database (SQLite or PostgreSQL), a live server on a real
socket, authenticated HTTP clients, and the SDK on both backends.

Database choice: ``PODSTACK_TEST_DB=sqlite`` (default) or ``postgresql``. ``make test`` runs
the suite on both. PostgreSQL is the local server at 127.0.0.1:5432 with trust auth; each
pytest worker gets a fresh database that is dropped at the end.

Store choice: ``PODSTACK_TEST_STORE=local`` (default) or ``s3`` (a bucket of the worker's own
SeaweedFS, ``tests/s3_server.py``); ``make test`` runs its PostgreSQL pass on ``s3``.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import httpx._transports.default as httpx_transports
import pytest
import uvicorn
from argon2 import PasswordHasher
from sqlalchemy import create_engine, inspect, text

from podstack import MLOpsClient
from podstack.server.app import create_app
from podstack.server.auth import passwords, token_cache
from podstack.server.auth import service as auth_service
from podstack.server.config import Settings
from podstack.server.db import migrate
from podstack.server.db.models_registry import metadata
from podstack.server.db.session import Database
from podstack.tls import default_ssl_context
from tests.s3_server import OTHER_AWS_VARS

# A real S3 server (SeaweedFS) for the object-store tests: the `s3_server` fixture.
pytest_plugins = ["tests.s3_server"]

# httpx parses the whole CA bundle for every client it builds (~25 ms of CPU), even for the
# loopback http:// servers the suite talks to, and the tests build thousands of clients
# (fixtures, httpx.get, clients in threads): a tenth of the suite's CPU went there. Clients
# with default verification share one context, as Podstack's own clients do (podstack/tls.py);
# a client given its own `verify` still gets exactly that.
_httpx_create_ssl_context = httpx_transports.create_ssl_context


def _shared_default_ssl_context(
    verify: object = True, cert: object = None, trust_env: bool = True
) -> ssl.SSLContext:
    if verify is True and cert is None and trust_env:
        return default_ssl_context()
    return _httpx_create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)  # type: ignore[arg-type]


httpx_transports.create_ssl_context = _shared_default_ssl_context  # type: ignore[assignment]

ADMIN_TOKEN = "pst_test-admin-token-0123456789abcdef"

_CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')


def signed_in(base_url: str, password: str = ADMIN_TOKEN) -> httpx.Client:
    """An httpx client signed in to the UI of the server at ``base_url`` (as admin by default),
    through the login form and its CSRF token, as a browser does."""
    c = httpx.Client(base_url=base_url, follow_redirects=False, timeout=60)
    token = _CSRF_META.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    r = c.post("/login", data={"password": password, "csrf_token": token})
    assert r.status_code == 303, r.text
    return c


PG_ADMIN_URL = os.environ.get(
    "PODSTACK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Argon2 at production cost takes ~0.24 s of CPU per hash or check here, and the suite signs in
# with passwords hundreds of times in this process (live servers run in it). A cheap hasher for
# the session keeps the real code path (hash, verify, rehash, lockout); servers started as
# processes keep the production cost, and test_users_tokens checks that cost.
PRODUCTION_PASSWORD_HASHER = passwords._hasher


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    passwords._hasher = PRODUCTION_PASSWORD_HASHER


# The SDK retries failed calls for 60 s by default (client/base.py); tests about a dead or
# failing server expect its answer at once. tests/sdk/test_fault_tolerance.py sets its own.
os.environ.setdefault("PODSTACK_RETRY_SECONDS", "0")


def pytest_report_header(config: pytest.Config) -> str:
    return f"podstack test database: {current_db_kind()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test runs in the database pass where it checks something: ``postgres_only`` tests
    (replica races, SKIP LOCKED, outages) in the PostgreSQL pass, ``one_db`` tests (the
    database plays no part in what they check: browser flows, the CLI, the model server, the
    S3 store, the MLflow client) in the SQLite pass only. The other pass deselects them; it
    never skips them."""
    marker = "one_db" if current_db_kind() == "postgresql" else "postgres_only"
    # On the S3 store, tests of the local store's own files run in the other pass only.
    markers = (marker, "local_store") if current_store_kind() == "s3" else (marker,)
    keep, drop = [], []
    for item in items:
        _mark_one_db_by_directory(item)
        (drop if any(item.get_closest_marker(m) for m in markers) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # Two of the longest single tests start first: xdist's work stealing hands each worker a
    # block of the list and moves only tests not yet started, so a long test at the end of a
    # block ends the pass minutes after the others are done.
    keep.sort(key=lambda item: not _rel(item).startswith(_RUN_FIRST))
    items[:] = keep


# One test each, 50-150 s: the schemathesis fuzz (PostgreSQL pass) and the SDK under server
# restarts. (Not the Ray tests: their cluster comes up for them, and the job agent was not yet
# ready for the executor tests when Serve's tests started it first.)
_RUN_FIRST = (
    "tests/reliability/test_api_fuzz.py",
    "tests/sdk/test_fault_tolerance.py",
)


def _rel(item: pytest.Item) -> str:
    return Path(str(item.path)).resolve().relative_to(_ROOT).as_posix()


# Whole directories whose tests check something other than the database (the browser and the
# UI's pages, the CLI's parsing and output, the model server, the SDK's client side): the
# services they reach are tested on both databases under tests/server and tests/reliability.
# The files listed
# stay on both because the database is part of what they exercise (a server killed mid-write,
# `podstack server` against each kind of URL).
# Also one database: deployments (model-server processes and their rollouts; the rows they
# write are plain inserts and updates), outbound-request checks (URL and address rules),
# slow-client handling (the HTTP server), the access-control matrix (who may call which route
# is decided in Python before any query) and the architecture test (reads source files).
_ONE_DB_DIRS = (
    "browser/",
    "cli/",
    "serving/",
    "sdk/",
    "benchmarks/",
    "server/web/",
    "server/deployments/",
    "server/egress/",
    "server/core/test_slow_clients.py",
    "reliability/test_access_control.py",
    "test_architecture.py",
)
# `podstack server` against each kind of database URL: its tests are marked one by one (the
# two-worker first start runs on PostgreSQL, the rest on SQLite). (The SDK's fault-tolerance
# tests run once: the replay they rely on is tested on both databases in
# tests/server/idempotency.)
_BOTH_DB_FILES = ("tests/cli/test_server_cmd.py",)


_ROOT = Path(__file__).resolve().parent.parent


# Run again when the pass's store is a bucket (the PostgreSQL pass of `make test`): the SDK's
# artifact, registry and deployment flows (the seed's Integration Example among them), embedded
# and over HTTP, move the bytes the store holds.
_S3_PASS_FILES = (
    "tests/sdk/test_artifacts_sdk.py",
    "tests/sdk/test_registry_sdk.py",
    "tests/sdk/test_deployments_sdk.py",
)


def _mark_one_db_by_directory(item: pytest.Item) -> None:
    rel = _rel(item)
    inside = rel.removeprefix("tests/")
    if current_store_kind() == "s3" and rel in _S3_PASS_FILES:
        return
    if inside.startswith(_ONE_DB_DIRS) and rel not in _BOTH_DB_FILES:
        item.add_marker(pytest.mark.one_db)


def current_db_kind() -> str:
    return os.environ.get("PODSTACK_TEST_DB", "sqlite")


def current_store_kind() -> str:
    """``PODSTACK_TEST_STORE=s3``: the session's artifact store is a bucket of the suite's
    SeaweedFS instead of a local folder (``make test``'s PostgreSQL pass: the production
    pairing). Tests about the local store's own files are marked ``local_store``."""
    return os.environ.get("PODSTACK_TEST_STORE", "local")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if current_db_kind() == "postgresql":
        name = f"podstack_test_{uuid.uuid4().hex[:8]}_{_worker()}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # pragma: no cover - environment problem
            if IN_CI:
                raise
            pytest.skip(f"PostgreSQL unavailable at {PG_ADMIN_URL}: {exc}")
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{base}/{name}"
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("db") / "podstack.db"
        yield f"sqlite:///{path}"


@pytest.fixture
def scratch_database_url(tmp_path: Path) -> Iterator[str]:
    """A new, empty database of the kind under test (for migration and restore tests)."""
    if current_db_kind() != "postgresql":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"podstack_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def artifacts_uri(home: Path, request: pytest.FixtureRequest) -> str:
    if current_store_kind() != "s3":
        return str(home / "artifacts")
    s3 = request.getfixturevalue("s3_server")
    # boto3 reads the AWS variables when a store opens one of its clients: set for the whole
    # session (servers in this process, embedded SDK clients, processes the tests start).
    for key in OTHER_AWS_VARS:
        os.environ.pop(key, None)
    os.environ.update(s3.env())
    return f"s3://{s3.new_bucket('suite')}/podstack"


@pytest.fixture(scope="session")
def settings(database_url: str, home: Path, artifacts_uri: str) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        artifacts_uri=artifacts_uri,
        admin_token=ADMIN_TOKEN,
        background_workers=False,
        session_secret="test-session-secret",
        max_body_bytes=1024 * 1024,
        # The suite's own webhook and executor receivers listen on loopback, which the egress
        # rules refuse by default (tests/server/egress runs without this).
        outbound_allow="127.0.0.0/8,::1",
        secret_key="test-secret-key",
    )


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


_WIPE_SQL: dict[str, str] = {}


def _wipe(database: Database) -> None:
    """Empties every table. DELETE, not TRUNCATE: on PostgreSQL a TRUNCATE of ~35 tables costs
    ~400 ms (file work per table) against ~2 ms for DELETEs of the few rows a test leaves;
    sequences are reset so ids still start at 1 in every test."""
    sql = _WIPE_SQL.get(database.url)
    if sql is None:
        existing = set(inspect(database.engine).get_table_names())
        tables = [t.name for t in reversed(metadata.sorted_tables) if t.name in existing]
        stmts = [f'DELETE FROM "{t}"' for t in tables]
        if database.dialect == "postgresql":
            with database.engine.connect() as conn:
                seqs = (
                    conn.execute(
                        text(
                            "SELECT sequence_name FROM information_schema.sequences "
                            "WHERE sequence_schema = 'public'"
                        )
                    )
                    .scalars()
                    .all()
                )
            if seqs:
                stmts.append("SELECT " + ", ".join(f"setval('\"{q}\"', 1, false)" for q in seqs))
        else:
            stmts.append("DELETE FROM sqlite_sequence" if "sqlite_sequence" in existing else "")
        sql = "; ".join(x for x in stmts if x)
        _WIPE_SQL[database.url] = sql
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            conn.exec_driver_sql(sql)
        else:
            for stmt in sql.split("; "):
                conn.exec_driver_sql(stmt)
    # Servers in this process remember verified tokens for a moment; the rows are gone.
    token_cache.clear_all()


@pytest.fixture(autouse=True)
def clean_db(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches the database starts from an empty one with the admin user."""
    if "db" not in request.fixturenames:
        yield
        return
    database: Database = request.getfixturevalue("db")
    _wipe(database)
    with database.session() as s:
        auth_service.bootstrap_admin(s, ADMIN_TOKEN)
    yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="session")
def live_server(settings: Settings, db: Database) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    """Raw REST client authenticated as admin, over a real socket."""
    with httpx.Client(
        base_url=live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    ) as c:
        yield c


@pytest.fixture
def anon(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url + "/api/v1", timeout=60) as c:
        yield c


@pytest.fixture
def make_token(db: Database) -> Callable[..., str]:
    """make_token("viewer") -> a token for a fresh user of that role."""

    def make(role: str = "viewer", username: str | None = None) -> str:
        username = username or f"{role}-{uuid.uuid4().hex[:6]}"
        with db.session() as s:
            auth_service.create_user(s, "test", username, role=role)
            return auth_service.create_token(s, "test", username, "test").value

    return make


@pytest.fixture
def client_for(live_server: LiveServer) -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(token: str) -> httpx.Client:
        c = httpx.Client(
            base_url=live_server.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture(params=["embedded", "http"])
def client(
    request: pytest.FixtureRequest,
    settings: Settings,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MLOpsClient]:
    """The SDK, once embedded (in-process) and once over HTTP to the live server."""
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    if request.param == "embedded":
        monkeypatch.delenv("PODSTACK_URL", raising=False)
        monkeypatch.setenv("PODSTACK_HOME", str(settings.home))
        monkeypatch.setenv("PODSTACK_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", settings.artifacts_uri)
        # Same egress allow-list and secrets key as the live server (loopback receivers).
        monkeypatch.setenv("PODSTACK_OUTBOUND_ALLOW", settings.outbound_allow)
        monkeypatch.setenv("PODSTACK_SECRET_KEY", settings.secret_key or "")
        c = MLOpsClient()
    else:
        server: LiveServer = request.getfixturevalue("live_server")
        c = MLOpsClient(api_token=ADMIN_TOKEN, url=server.url)
    yield c
    c.close()
