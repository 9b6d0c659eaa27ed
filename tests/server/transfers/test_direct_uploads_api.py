"""Upload and download grants over raw HTTP against a live server whose store is a real S3
server (SeaweedFS): the bytes go to the bucket with presigned URLs, and the server records
an artifact only after confirming size and sha256. Every bad input: a clear 4xx and nothing
changed (no upload, no artifact, nothing in the bucket).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select

from podstack.server.audit.models import AuditEvent
from podstack.server.db.session import Database
from podstack.server.transfers.models import ArtifactUpload
from tests.server.transfers.s3_app import PART, THRESHOLD, S3App

# Tests of what the bucket and the server's checks do, in which the database plays no part.
BUCKET_ONLY = pytest.mark.one_db


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(api: httpx.Client, exp: str = "direct") -> str:
    r = api.post("/runs", json={"experiment_id": exp})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _error(r: httpx.Response, status: int, code: str, *words: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    for w in words:
        assert w in body["message"], body["message"]
    return body


def _grant(api: httpx.Client, run_id: str, path: str, data: bytes, **extra: object) -> dict:
    body = {"path": path, "sha256": _sha(data), "size": len(data), **extra}
    r = api.post(f"/runs/{run_id}/uploads", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _artifacts(api: httpx.Client, run_id: str) -> list[dict]:
    return api.get(f"/runs/{run_id}/artifacts", params={"recursive": "true"}).json()["items"]


def _uploads(db: Database) -> int:
    with db.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(ArtifactUpload)) or 0)


def _audit(db: Database) -> int:
    with db.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def _bucket_put(url: str, data: bytes, headers: dict[str, str]) -> httpx.Response:
    # No Authorization header: a presigned URL carries its own signature.
    return httpx.put(url, content=data, headers=headers, timeout=60)


def _parts(app: S3App, api: httpx.Client, run_id: str, grant: dict, data: bytes) -> list[dict]:
    """Uploads every part of ``data`` for a multipart grant; returns complete's body parts."""
    size = grant["part_size"]
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert len(chunks) == grant["part_count"]
    wanted = [{"number": n, "sha256": _sha(c)} for n, c in enumerate(chunks, 1)]
    r = api.post(f"/runs/{run_id}/uploads/{grant['upload_id']}/parts", json={"parts": wanted})
    assert r.status_code == 200, r.text
    for part, chunk in zip(r.json()["parts"], chunks, strict=True):
        assert part["size"] == len(chunk)
        assert _bucket_put(part["url"], chunk, part["headers"]).status_code == 200
    return wanted


# ---------------------------------------------------------------- the happy paths


def test_single_put_is_recorded_only_after_complete(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(200_000)
        grant = _grant(api, run_id, "model/weights.bin", data)
        assert grant["mode"] == "single" and grant["url"] and grant["upload_id"]
        assert "x-amz-checksum-sha256" in grant["headers"]
        assert _bucket_put(grant["url"], data, grant["headers"]).status_code == 200
        # In the bucket (staged), but not part of the run until the server has checked it.
        assert _artifacts(api, run_id) == []
        assert s3.keys("blobs/") == []
        r = api.post(f"/runs/{run_id}/uploads/{grant['upload_id']}/complete", json={})
        assert r.status_code == 201, r.text
        assert r.json() == {"path": "model/weights.bin", "size": len(data), "sha256": _sha(data)}
        digest = _sha(data)
        assert s3.keys() == [f"pfx/blobs/sha256/{digest[:2]}/{digest[2:4]}/{digest}"]
        assert _uploads(db) == 0
        # The download grant is a short-lived presigned GET of exactly those bytes.
        g = api.get(f"/runs/{run_id}/downloads/model/weights.bin").json()
        assert g["mode"] == "direct" and g["sha256"] == digest and g["size"] == len(data)
        assert httpx.get(g["url"], timeout=60).content == data
        # The streamed route still serves the same bytes (proxied mode).
        assert api.get(f"/runs/{run_id}/artifacts/model/weights.bin").content == data


@BUCKET_ONLY
def test_multipart_parts_then_complete(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(2 * PART + 12345)
        grant = _grant(api, run_id, "big.bin", data)
        assert grant["mode"] == "multipart"
        assert grant["part_size"] == PART and grant["part_count"] == 3
        upload = f"/runs/{run_id}/uploads/{grant['upload_id']}"
        parts = _parts(s3, api, run_id, grant, data)
        status = api.get(upload).json()
        assert [p["number"] for p in status["parts"]] == [1, 2, 3]
        r = api.post(upload + "/complete", json={"parts": parts})
        assert r.status_code == 201, r.text
        assert _artifacts(api, run_id)[0]["sha256"] == _sha(data)
        g = api.get(f"/runs/{run_id}/downloads/big.bin").json()
        assert hashlib.sha256(httpx.get(g["url"], timeout=60).content).hexdigest() == _sha(data)
        assert s3.keys("uploads/") == [] and s3.multiparts() == []


def test_missing_parts_are_named_and_the_upload_can_go_on(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(2 * PART + 10)
        grant = _grant(api, run_id, "big.bin", data)
        upload = f"/runs/{run_id}/uploads/{grant['upload_id']}"
        first = data[:PART]
        r = api.post(upload + "/parts", json={"parts": [{"number": 1, "sha256": _sha(first)}]})
        part = r.json()["parts"][0]
        assert _bucket_put(part["url"], first, part["headers"]).status_code == 200
        r = api.post(upload + "/complete", json={})
        body = _error(r, 409, "CONFLICT", "missing 2 of 3 parts")
        assert body["details"]["missing_parts"] == [2, 3]
        assert _artifacts(api, run_id) == []
        # Asking for the same grant again resumes the same upload, with part 1 in place.
        again = _grant(api, run_id, "big.bin", data)
        assert again["upload_id"] == grant["upload_id"]
        assert [p["number"] for p in api.get(upload).json()["parts"]] == [1]
        parts = _parts(s3, api, run_id, again, data)
        assert api.post(upload + "/complete", json={"parts": parts}).status_code == 201


def test_identical_content_is_recorded_without_a_transfer(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(50_000)
        grant = _grant(api, run_id, "a.bin", data)
        _bucket_put(grant["url"], data, grant["headers"])
        api.post(f"/runs/{run_id}/uploads/{grant['upload_id']}/complete", json={})
        again = _grant(api, run_id, "copy/a.bin", data)
        assert again["mode"] == "exists" and again["url"] is None
        assert again["artifact"] == {"path": "copy/a.bin", "size": len(data), "sha256": _sha(data)}
        assert {a["path"] for a in _artifacts(api, run_id)} == {"a.bin", "copy/a.bin"}
        assert _uploads(db) == 0


def test_abort_discards_parts_and_the_upload(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(THRESHOLD + 1)
        grant = _grant(api, run_id, "big.bin", data)
        assert len(s3.multiparts()) == 1
        r = api.delete(f"/runs/{run_id}/uploads/{grant['upload_id']}")
        assert r.status_code == 204
        assert s3.multiparts() == [] and _uploads(db) == 0
        r = api.post(f"/runs/{run_id}/uploads/{grant['upload_id']}/complete", json={})
        _error(r, 404, "NOT_FOUND", "completed, aborted, or never started")


# ---------------------------------------------------------------- integrity


@BUCKET_ONLY
def test_bytes_that_do_not_match_are_refused_by_the_bucket(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(100_000)
        grant = _grant(api, run_id, "w.bin", data)
        corrupted = bytearray(data)
        corrupted[500] ^= 0xFF
        r = _bucket_put(grant["url"], bytes(corrupted), grant["headers"])
        assert r.status_code == 400 and b"BadDigest" in r.content
        # Without the signed checksum header the bucket refuses the request outright.
        assert _bucket_put(grant["url"], data, {}).status_code == 403
        r = api.post(f"/runs/{run_id}/uploads/{grant['upload_id']}/complete", json={})
        _error(r, 409, "CONFLICT", "Nothing has been uploaded")
        assert _artifacts(api, run_id) == [] and s3.keys("blobs/") == []


@BUCKET_ONLY
def test_a_corrupted_part_is_refused(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(THRESHOLD + 100)
        grant = _grant(api, run_id, "big.bin", data)
        upload = f"/runs/{run_id}/uploads/{grant['upload_id']}"
        first = data[:PART]
        r = api.post(upload + "/parts", json={"parts": [{"number": 1, "sha256": _sha(first)}]})
        part = r.json()["parts"][0]
        bad = b"\0" * PART
        r = _bucket_put(part["url"], bad, part["headers"])
        assert r.status_code == 400 and b"BadDigest" in r.content
        assert api.get(upload).json()["parts"] == []
        assert _artifacts(api, run_id) == []


def test_staged_bytes_that_hash_differently_are_discarded(s3: S3App, db: Database) -> None:
    """A store that did not verify the checksum (simulated by writing the staging object
    with the server's own credentials): the server's own check refuses it, deletes it and
    records nothing; the upload is gone and the refusal is audited."""
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(10_000)
        grant = _grant(api, run_id, "w.bin", data)
        staging = f"pfx/uploads/{grant['upload_id']}"
        s3.s3.client().put_object(Bucket=s3.bucket, Key=staging, Body=b"x" * len(data))
        r = api.post(f"/runs/{run_id}/uploads/{grant['upload_id']}/complete", json={})
        body = _error(r, 400, "CHECKSUM_MISMATCH", "do not match", "Nothing was recorded")
        assert body["details"]["expected"] == _sha(data)
        assert _artifacts(api, run_id) == []
        assert s3.keys() == []  # staged object deleted, no blob
        assert _uploads(db) == 0
        with db.session(readonly=True) as s:
            actions = set(s.scalars(select(AuditEvent.action)))
        assert "artifact.upload_refused" in actions


@BUCKET_ONLY
def test_multipart_object_is_hashed_by_the_server(s3: S3App, db: Database) -> None:
    """Parts each carry their checksum, but the whole object's sha256 is only known by
    reading it back: parts of *other* content, each consistent with itself, are refused."""
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(THRESHOLD + 100)
        other = os.urandom(THRESHOLD + 100)
        grant = _grant(api, run_id, "big.bin", data)
        parts = _parts(s3, api, run_id, grant, other)
        upload = f"/runs/{run_id}/uploads/{grant['upload_id']}"
        r = api.post(upload + "/complete", json={"parts": parts})
        _error(r, 400, "CHECKSUM_MISMATCH", "Nothing was recorded")
        assert _artifacts(api, run_id) == [] and s3.keys() == [] and s3.multiparts() == []


# ---------------------------------------------------------------- modes


@BUCKET_ONLY
def test_proxy_mode_by_setting_and_by_request(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(1000)
        g = _grant(api, run_id, "a.bin", data, proxy=True)
        assert g["mode"] == "proxy" and "asked" in g["reason"]
        s3.settings.artifacts_proxy = True
        g = _grant(api, run_id, "a.bin", data)
        assert g["mode"] == "proxy" and "PODSTACK_ARTIFACTS_PROXY" in g["reason"]
        assert _uploads(db) == 0
        # The proxied route stores in the bucket; grants for downloads say proxy as well.
        r = api.put(f"/runs/{run_id}/artifacts/a.bin", content=data)
        assert r.status_code == 201, r.text
        assert api.get(f"/runs/{run_id}/downloads/a.bin").json()["mode"] == "proxy"
        s3.settings.artifacts_proxy = False
        assert api.get(f"/runs/{run_id}/downloads/a.bin").json()["mode"] == "direct"
        g = api.get(f"/runs/{run_id}/downloads/a.bin", params={"proxy": "true"}).json()
        assert g["mode"] == "proxy" and g["url"] is None


@BUCKET_ONLY
def test_local_store_answers_proxy(api: httpx.Client, db: Database) -> None:
    run_id = _run(api)
    data = os.urandom(1000)
    g = _grant(api, run_id, "a.bin", data)
    assert g["mode"] == "proxy" and "local directory" in g["reason"]
    assert api.put(f"/runs/{run_id}/artifacts/a.bin", content=data).status_code == 201
    assert api.get(f"/runs/{run_id}/downloads/a.bin").json()["mode"] == "proxy"
    # Dedup works on the local store too: the same content elsewhere moves no byte.
    g = _grant(api, run_id, "b.bin", data)
    assert g["mode"] == "exists" and g["artifact"]["path"] == "b.bin"


@BUCKET_ONLY
def test_version_download_grant(s3: S3App, db: Database) -> None:
    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(3000)
        assert api.put(f"/runs/{run_id}/artifacts/m/model.bin", content=data).status_code == 201
        assert api.post("/registered-models", json={"name": "direct-m"}).status_code == 201
        r = api.post(
            "/registered-models/direct-m/versions",
            json={"source_run_id": run_id, "artifact_path": "m"},
        )
        assert r.status_code == 201, r.text
        g = api.get("/registered-models/direct-m/versions/1/downloads/model.bin").json()
        assert "mode" in g, g
        assert g["mode"] == "direct" and httpx.get(g["url"], timeout=60).content == data
        r = api.get("/registered-models/direct-m/versions/1/downloads/nope.bin")
        _error(r, 404, "NOT_FOUND", "has no file")


# ---------------------------------------------------------------- bad input


GOOD = "0" * 64


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"path": "a.bin", "sha256": "xyz", "size": 1}, 422, "VALIDATION_ERROR", "sha256"),
        ({"path": "a.bin", "sha256": GOOD, "size": -1}, 422, "VALIDATION_ERROR", "size"),
        ({"path": "../a.bin", "sha256": GOOD, "size": 1}, 422, "VALIDATION_ERROR", ".."),
        ({"path": "/etc/x", "sha256": GOOD, "size": 1}, 422, "VALIDATION_ERROR", "absolute"),
        ({"path": "a.bin", "sha256": GOOD}, 422, "VALIDATION_ERROR", "size"),
        ({"path": "a", "sha256": GOOD, "size": 1, "x": 1}, 422, "VALIDATION_ERROR", "x"),
        ({"path": "a", "sha256": GOOD, "size": 10**15}, 413, "PAYLOAD_TOO_LARGE", "limited"),
    ],
)
def test_bad_grant_requests(
    s3: S3App, db: Database, body: dict, status: int, code: str, words: str
) -> None:
    with s3.api() as api:
        run_id = _run(api)
        audit_before = _audit(db)
        r = api.post(f"/runs/{run_id}/uploads", json=body)
        _error(r, status, code)
        assert words.lower() in r.text.lower()
        assert _uploads(db) == 0 and _audit(db) == audit_before
        assert _artifacts(api, run_id) == []
        assert s3.keys() == [] and s3.multiparts() == []


def test_refusals_change_nothing(
    s3: S3App,
    db: Database,
    make_token: Callable[..., str],
) -> None:
    data = os.urandom(100)
    body = {"path": "a.bin", "sha256": _sha(data), "size": len(data)}
    with s3.api() as api:
        run_id = _run(api)
        other_run = _run(api, "other")
        finished = _run(api, "done")
        assert api.patch(f"/runs/{finished}", json={"status": "FINISHED"}).status_code == 200
        viewer_token, editor_token = make_token("viewer"), make_token("editor")
        job = _job_token(db, other_run)
        audit_before = _audit(db)
        _error(api.post("/runs/run-nope/uploads", json=body), 404, "NOT_FOUND", "run-nope")
        _error(api.post(f"/runs/{finished}/uploads", json=body), 409, "CONFLICT", "FINISHED")
        with httpx.Client(base_url=s3.url + "/api/v1", timeout=30) as anon:
            _error(anon.post(f"/runs/{run_id}/uploads", json=body), 401, "UNAUTHENTICATED")
            r = anon.get(f"/runs/{run_id}/downloads/a.bin")
            _error(r, 401, "UNAUTHENTICATED")
        with s3.api(viewer_token) as viewer:
            _error(viewer.post(f"/runs/{run_id}/uploads", json=body), 403, "PERMISSION_DENIED")
        with s3.api(job) as other:
            r = other.post(f"/runs/{run_id}/uploads", json=body)
            _error(r, 403, "PERMISSION_DENIED", other_run)
            # Its own run is fine.
            assert other.post(f"/runs/{other_run}/uploads", json=body).json()["mode"] == "single"
        for rid in (run_id, finished):
            assert _artifacts(api, rid) == []
        assert s3.keys() == []
        assert _audit(db) == audit_before + 1  # only the job's own upload started
        # Someone else's upload, a made-up id, parts of a single upload, bad part numbers.
        g = _grant(api, run_id, "big.bin", os.urandom(THRESHOLD + 1))
        up = f"/runs/{run_id}/uploads/{g['upload_id']}"
        with s3.api(editor_token) as editor:
            _error(editor.get(up), 404, "NOT_FOUND", "of yours")
            _error(editor.delete(up), 404, "NOT_FOUND")
        _error(api.get(f"/runs/{run_id}/uploads/upl-nope"), 404, "NOT_FOUND", "upl-nope")
        _error(api.get(f"/runs/{other_run}/uploads/{g['upload_id']}"), 404, "NOT_FOUND")
        part = {"number": 3, "sha256": GOOD}
        r = api.post(up + "/parts", json={"parts": [part]})
        _error(r, 422, "VALIDATION_ERROR", "between 1 and 2")
        r = api.post(up + "/parts", json={"parts": [{"number": 1, "sha256": GOOD}] * 2})
        _error(r, 422, "VALIDATION_ERROR", "repeated")
        _error(api.post(up + "/parts", json={"parts": []}), 422, "VALIDATION_ERROR")
        single = _grant(api, run_id, "small.bin", data)
        r = api.post(f"/runs/{run_id}/uploads/{single['upload_id']}/parts", json={"parts": [part]})
        _error(r, 409, "CONFLICT", "single PUT")
        assert _artifacts(api, run_id) == []
        # Downloads: bad path, unknown file.
        _error(api.get(f"/runs/{run_id}/downloads/a/%2E%2E/b"), 422, "VALIDATION_ERROR")
        _error(api.get(f"/runs/{run_id}/downloads/none.bin"), 404, "NOT_FOUND", "none.bin")


def _job_token(db: Database, run_id: str) -> str:
    """A run-scoped token, as a scheduled job gets."""
    from podstack.server.auth import service as auth_service

    with db.session() as s:
        return auth_service.create_token(s, "test", "admin", "job", scope=f"run:{run_id}").value


# ---------------------------------------------------------------- abandoned uploads


@pytest.mark.parametrize("dry_run", [True, False])
def test_abort_stale_uploads(s3: S3App, db: Database, dry_run: bool) -> None:
    from podstack.server.transfers import service

    with s3.api() as api:
        run_id = _run(api)
        data = os.urandom(THRESHOLD + 1)
        grant = _grant(api, run_id, "big.bin", data)
        part = data[:PART]
        r = api.post(
            f"/runs/{run_id}/uploads/{grant['upload_id']}/parts",
            json={"parts": [{"number": 1, "sha256": _sha(part)}]},
        )
        p = r.json()["parts"][0]
        _bucket_put(p["url"], part, p["headers"])
        single = _grant(api, run_id, "small.bin", b"abc")
        _bucket_put(single["url"], b"abc", single["headers"])
        # Left in the bucket by a transaction that failed: no row knows these.
        client = s3.s3.client()
        orphan = client.create_multipart_upload(Bucket=s3.bucket, Key="pfx/uploads/upl-orphan")
        client.put_object(Bucket=s3.bucket, Key="pfx/uploads/upl-orphan2", Body=b"x")
    with db.session() as s:
        report = service.abort_stale_uploads(s, s3.store, older_than_seconds=0, dry_run=dry_run)
    assert sorted(report.uploads) == sorted([grant["upload_id"], single["upload_id"]])
    assert report.orphan_multiparts == ["pfx/uploads/upl-orphan"]
    assert report.orphan_objects == ["pfx/uploads/upl-orphan2"]
    if dry_run:
        assert _uploads(db) == 2 and len(s3.multiparts()) == 2
        assert len(s3.keys("uploads/")) == 2
    else:
        assert _uploads(db) == 0 and s3.multiparts() == [] and s3.keys() == []
    assert orphan["UploadId"]
    # Young uploads are never touched.
    with db.session() as s:
        report = service.abort_stale_uploads(s, s3.store, older_than_seconds=3600)
    assert report.uploads == [] and report.orphan_objects == []


@BUCKET_ONLY
def test_copy_through_the_server_when_the_store_cannot_copy(s3: S3App) -> None:
    """The fallback for stores whose server-side copy fails (seen with SeaweedFS after a part
    was uploaded twice): the bytes are rewritten by the store's own verified writer."""
    from podstack.errors import IntegrityError
    from podstack.server.transfers import bucket

    data = os.urandom(PART + 10)
    client = s3.s3.client()
    client.put_object(Bucket=s3.bucket, Key="pfx/uploads/upl-x", Body=data)
    with pytest.raises(IntegrityError):
        bucket._copy_through(s3.store, "pfx/uploads/upl-x", _sha(b"other"))
    assert s3.keys("blobs/") == [] and s3.multiparts() == []
    bucket._copy_through(s3.store, "pfx/uploads/upl-x", _sha(data))
    assert s3.store.stat(_sha(data)).size == len(data)
    assert b"".join(s3.store.iter_blob(_sha(data))) == data
