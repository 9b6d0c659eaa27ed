from __future__ import annotations

from collections.abc import Iterator

import pytest

from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.s3_server import SeaweedS3
from tests.server.transfers.s3_app import S3App, s3_app


@pytest.fixture(scope="module")
def app_s3(s3_server: SeaweedS3, settings: Settings, db: Database) -> Iterator[S3App]:
    """One S3-backed server per test module (a fresh bucket; the database is wiped per test
    as usual)."""
    with s3_app(s3_server, settings) as app:
        yield app


@pytest.fixture
def s3(app_s3: S3App) -> Iterator[S3App]:
    """The module's S3-backed server, with its settings restored after each test."""
    saved = app_s3.settings.model_dump()
    app_s3.empty()
    yield app_s3
    for key in ("artifacts_proxy", "artifacts_multipart_threshold_bytes"):
        setattr(app_s3.settings, key, saved[key])
