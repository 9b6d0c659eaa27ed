"""A server with ``PODSTACK_DEFAULT_PERMISSION=NONE`` on a database of its own (module-scoped:
the suite's ``clean_db`` empties the shared database before every test, and the permission
matrix reads one world many times), with a model and an experiment owned by ``owner``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from podstack.server.auth import groups, service_accounts
from podstack.server.auth import service as auth_service
from podstack.server.config import Settings
from podstack.server.db import migrate
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, PG_ADMIN_URL, LiveServer, current_db_kind

MODEL = "secret-model"
EXPERIMENT = "secret-exp"
GROUP = "team-a"
# Who holds what on MODEL and EXPERIMENT (all editors by role unless said).
PRINCIPALS = (
    "owner",
    "reader",
    "editor",
    "manager",
    "grouped",
    "other",
    "admin",
    "service",
    "job",
)


@dataclass
class World:
    url: str
    tokens: dict[str, str]
    usernames: dict[str, str]
    run_id: str  # a run in EXPERIMENT (backs MODEL's version 1)
    job_run_id: str  # the job token's own run, in another experiment
    experiment_id: str
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, who: str, prefix: str = "/api/v1") -> httpx.Client:
        key = f"{who}{prefix}"
        if key not in self.clients:
            self.clients[key] = httpx.Client(
                base_url=self.url + prefix,
                headers={"Authorization": f"Bearer {self.tokens[who]}"},
                timeout=60,
            )
        return self.clients[key]


def _database_url(tmp: Path) -> Iterator[str]:
    if current_db_kind() != "postgresql":
        yield f"sqlite:///{tmp / 'perm.db'}"
        return
    name = f"podstack_perm_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def perm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Database]]:
    tmp = tmp_path_factory.mktemp("perm")
    gen = _database_url(tmp)
    url = next(gen)
    settings = Settings(
        home=tmp,
        database_url=url,
        artifacts_uri=str(tmp / "artifacts"),
        admin_token=ADMIN_TOKEN,
        background_workers=False,
        session_secret="test-session-secret",
        secret_key="test-secret-key",
        default_permission="NONE",
        # The access-control world's webhook and schedule receivers listen on loopback.
        outbound_allow="127.0.0.0/8,::1",
    )
    db = Database(url)
    migrate.upgrade(db.engine)
    server = LiveServer(settings)
    server.start()
    try:
        yield server, db
    finally:
        server.stop()
        db.dispose()
        gen.close()


def make_user(db: Database, role: str, prefix: str) -> tuple[str, str]:
    username = f"{prefix}-{uuid.uuid4().hex[:6]}"
    with db.session() as s:
        auth_service.create_user(s, "test", username, role=role)
        return username, auth_service.create_token(s, "test", username, "t").value


@pytest.fixture(scope="module")
def world(perm_server: tuple[LiveServer, Database]) -> Iterator[World]:
    server, db = perm_server
    tokens: dict[str, str] = {"admin": ADMIN_TOKEN}
    names: dict[str, str] = {"admin": "admin"}
    for who in ("owner", "reader", "editor", "manager", "grouped", "other"):
        names[who], tokens[who] = make_user(db, "editor", who)
    with db.session() as s:
        svc = service_accounts.create(s, "test", f"ci-{uuid.uuid4().hex[:6]}", role="editor")
        names["service"] = svc.username
        tokens["service"] = auth_service.create_token(s, "test", svc.username, "ci").value
        # As the identity provider would record it at single sign-on.
        grouped = auth_service.get_user(s, names["grouped"])
        groups.replace_memberships(s, "test", grouped, [GROUP])
    owner = httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"Authorization": f"Bearer {tokens['owner']}"},
        timeout=60,
    )
    admin = httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    r = owner.post("/experiments", json={"name": EXPERIMENT})
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    r = owner.post("/runs", json={"experiment_id": exp_id})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert owner.put(f"/runs/{run_id}/artifacts/model.pt", content=b"w1").status_code == 201
    r = owner.post(
        f"/registered-models/{MODEL}/versions",
        json={"source_run_id": run_id, "artifact_path": "model.pt"},
    )
    assert r.status_code == 201, r.text
    for kind, ref in (("registered-models", MODEL), ("experiments", exp_id)):
        for who, level, gtype in (
            ("reader", "READ", "user"),
            ("editor", "EDIT", "user"),
            ("manager", "MANAGE", "user"),
            ("service", "READ", "user"),
        ):
            r = owner.put(
                f"/{kind}/{ref}/permissions/{gtype}/{names[who]}", json={"permission": level}
            )
            assert r.status_code == 201, r.text
        r = owner.put(f"/{kind}/{ref}/permissions/group/{GROUP}", json={"permission": "EDIT"})
        assert r.status_code == 201, r.text
    # The job token: a run of its own in an experiment of the scheduler's (an admin, as the
    # real scheduler user is), limited to that run.
    r = admin.post("/runs", json={"experiment_id": "job-exp"})
    assert r.status_code == 201, r.text
    job_run = r.json()["id"]
    job_user, _ = make_user(db, "admin", "scheduler")
    with db.session() as s:
        tokens["job"] = auth_service.create_token(
            s, "test", job_user, "job", scope=f"run:{job_run}"
        ).value
    names["job"] = job_user
    owner.close()
    admin.close()
    w = World(
        url=server.url,
        tokens=tokens,
        usernames=names,
        run_id=run_id,
        job_run_id=job_run,
        experiment_id=exp_id,
    )
    yield w
    for c in w.clients.values():
        c.close()
