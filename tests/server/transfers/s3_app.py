"""A Podstack server on a real socket whose artifact store is a fresh bucket of the test S3
server (SeaweedFS), reached through a recording proxy (bucket_proxy.py).

Small multipart settings (parts of 5 MiB, S3's minimum, above 6 MiB) keep multipart tests
to a few megabytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.config import Settings
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.s3_server import SeaweedS3
from tests.server.transfers.bucket_proxy import RecordingProxy

MiB = 1024 * 1024
PART = 5 * MiB
THRESHOLD = 6 * MiB
PREFIX = "pfx"


@dataclass
class S3App:
    server: LiveServer
    proxy: RecordingProxy
    s3: SeaweedS3
    bucket: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def settings(self) -> Settings:
        return self.server.app.state.settings

    @property
    def store(self) -> Any:
        return self.server.app.state.store

    def api(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    def sdk(self, token: str = ADMIN_TOKEN, **kw: Any) -> MLOpsClient:
        return MLOpsClient(api_token=token, url=self.url, **kw)

    def keys(self, under: str = "") -> list[str]:
        return self.s3.keys(self.bucket, f"{PREFIX}/{under}")

    def empty(self) -> None:
        """Removes every object and multipart upload (the database is wiped per test: blobs
        from an earlier test would otherwise be found by dedup)."""
        client = self.s3.client()
        for key in self.keys():
            client.delete_object(Bucket=self.bucket, Key=key)
        for u in self.multiparts():
            client.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])

    def multiparts(self) -> list[dict[str, Any]]:
        page = self.s3.client().list_multipart_uploads(Bucket=self.bucket, Prefix=PREFIX + "/")
        return list(page.get("Uploads", []) or [])


@contextmanager
def s3_app(s3: SeaweedS3, settings: Settings, **overrides: Any) -> Iterator[S3App]:
    proxy = RecordingProxy(s3.endpoint)
    bucket = s3.new_bucket()
    with pytest.MonkeyPatch.context() as mp:
        # boto3 reads these when the server opens its store (AWS_ENDPOINT_URL_S3 = the proxy,
        # so presigned URLs lead through it too).
        s3.apply_env(mp, AWS_ENDPOINT_URL_S3=proxy.endpoint)
        custom = settings.model_copy(
            update={
                "artifacts_uri": f"s3://{bucket}/{PREFIX}",
                "artifacts_multipart_threshold_bytes": THRESHOLD,
                "artifacts_part_size_bytes": PART,
                **overrides,
            }
        )
        server = LiveServer(custom)
        server.start()
        try:
            yield S3App(server, proxy, s3, bucket)
        finally:
            server.stop()
            proxy.close()
