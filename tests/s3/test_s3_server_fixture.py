"""The suite's S3 server itself: reachable with its identity, fresh buckets, loopback only."""

from __future__ import annotations

import pytest

from tests.s3_server import SeaweedS3

pytestmark = pytest.mark.one_db


def test_fresh_bucket_round_trip(s3_server: SeaweedS3) -> None:
    bucket = s3_server.new_bucket()
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="a/b", Body=b"hello")
    assert client.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"hello"
    assert s3_server.keys(bucket) == ["a/b"]
    assert s3_server.new_bucket() != bucket
    assert s3_server.endpoint.startswith("http://127.0.0.1:")
    assert all(p < 40000 for p in s3_server.ports)
