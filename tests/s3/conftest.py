"""A Podstack server whose artifacts live in an S3 bucket (the suite's SeaweedFS), beside the
session's local-store server, on the same test database (wiped per test as usual).

Transfers are proxied (``artifacts_proxy``): the server streams every byte, the mode for
clients that cannot reach the bucket. Direct (presigned) transfers are tested with the
transfers capability.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.s3_server import OTHER_AWS_VARS, SeaweedS3


@contextmanager
def aws_env(s3: SeaweedS3, **overrides: str) -> Iterator[None]:
    """The AWS variables for ``s3`` in this process while a store is opened (boto3 reads
    them when the client is made), restored afterwards."""
    values = s3.env(**overrides)
    cleared = OTHER_AWS_VARS
    saved = {k: os.environ.get(k) for k in [*values, *cleared]}
    for k in cleared:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3_bucket(s3_server: SeaweedS3) -> str:
    return s3_server.new_bucket("server")


@pytest.fixture(scope="session")
def s3_settings(
    settings: Settings, s3_bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return settings.model_copy(
        update={
            "home": tmp_path_factory.mktemp("s3home"),
            "artifacts_uri": f"s3://{s3_bucket}/podstack",
            "artifacts_proxy": True,
        }
    )


@pytest.fixture(scope="session")
def s3_live_server(
    s3_settings: Settings, s3_server: SeaweedS3, db: Database
) -> Iterator[LiveServer]:
    with aws_env(s3_server):
        server = LiveServer(s3_settings)
        server.start()  # the app opens (and checks) its S3 store here
    yield server
    server.stop()


@pytest.fixture
def s3_api(s3_live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=s3_live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    ) as c:
        yield c


@pytest.fixture(params=["embedded", "http"])
def s3_client(
    request: pytest.FixtureRequest,
    s3_settings: Settings,
    s3_server: SeaweedS3,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MLOpsClient]:
    """The SDK on the S3 store: embedded (in-process, opening the bucket itself) and over
    HTTP to the S3 live server."""
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    if request.param == "embedded":
        s3_server.apply_env(monkeypatch)
        monkeypatch.delenv("PODSTACK_URL", raising=False)
        monkeypatch.setenv("PODSTACK_HOME", str(s3_settings.home))
        monkeypatch.setenv("PODSTACK_DATABASE_URL", s3_settings.database_url)
        monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", s3_settings.artifacts_uri)
        monkeypatch.setenv("PODSTACK_ARTIFACTS_PROXY", "true")
        monkeypatch.setenv("PODSTACK_OUTBOUND_ALLOW", s3_settings.outbound_allow)
        monkeypatch.setenv("PODSTACK_SECRET_KEY", s3_settings.secret_key or "")
        c = MLOpsClient()
    else:
        server: LiveServer = request.getfixturevalue("s3_live_server")
        c = MLOpsClient(api_token=ADMIN_TOKEN, url=server.url)
    yield c
    c.close()


def bucket_blob_keys(s3: SeaweedS3, bucket: str) -> list[str]:
    return [k for k in s3.keys(bucket, "podstack/blobs/")]


def local_blob_files(home: Path) -> list[Path]:
    return [p for p in (home / "artifacts").rglob("*") if p.is_file()]
