"""Artifacts over raw HTTP against a live server: wire shapes, streaming, integrity and every
bad input (clear 4xx, nothing stored)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator

import httpx
import pytest

from podstack.server.artifacts.store import BlobStore
from podstack.server.artifacts.store_factory import ArtifactStore, open_store
from podstack.server.config import Settings
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    # The store the live server writes to (a folder, or a bucket when PODSTACK_TEST_STORE=s3).
    return open_store(settings)


def _run(api: httpx.Client, exp: str = "art") -> str:
    r = api.post("/runs", json={"experiment_id": exp})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code
    assert body["message"]
    return body


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blobs(store: ArtifactStore) -> set[str]:
    return set(store.iter_digests())


def _nothing_stored(
    api: httpx.Client, store: ArtifactStore, run_id: str, blobs_before: set[str]
) -> None:
    assert api.get(f"/runs/{run_id}/artifacts", params={"recursive": "true"}).json()["items"] == []
    assert _blobs(store) == blobs_before
    # No half-written upload left behind (a temp file, or an open multipart upload), however
    # recent.
    assert store.stale_uploads(older_than_seconds=-60) == []


# ---------------------------------------------------------------- roundtrip


@pytest.mark.local_store  # reads or damages the blob files on disk
def test_upload_then_download_roundtrip(api: httpx.Client, store: BlobStore) -> None:
    run_id = _run(api)
    data = os.urandom(300_000)
    r = api.put(
        f"/runs/{run_id}/artifacts/checkpoints/model.pt",
        content=data,
        headers={"X-Content-SHA256": _sha(data)},
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"path": "checkpoints/model.pt", "size": len(data), "sha256": _sha(data)}
    assert store.path_for(_sha(data)).read_bytes() == data

    got = api.get(f"/runs/{run_id}/artifacts/checkpoints/model.pt")
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["x-content-sha256"] == _sha(data)
    assert got.headers["etag"] == f'"{_sha(data)}"'
    assert got.headers["content-type"] == "application/octet-stream"
    assert "model.pt" in got.headers["content-disposition"]
    cached = api.get(
        f"/runs/{run_id}/artifacts/checkpoints/model.pt",
        headers={"If-None-Match": got.headers["etag"]},
    )
    assert cached.status_code == 304 and cached.content == b""


def test_upload_without_checksum_header_records_sha256(api: httpx.Client) -> None:
    run_id = _run(api)
    r = api.put(f"/runs/{run_id}/artifacts/notes.txt", content=b"hello")
    assert r.status_code == 201
    assert r.json()["sha256"] == _sha(b"hello")


def test_unicode_and_spaces_in_paths(api: httpx.Client) -> None:
    run_id = _run(api)
    path = "données/モデル v1.bin"
    r = api.put(f"/runs/{run_id}/artifacts/{path}", content=b"x")
    assert r.status_code == 201 and r.json()["path"] == path
    assert api.get(f"/runs/{run_id}/artifacts/{path}").content == b"x"


def test_streamed_chunked_upload(api: httpx.Client) -> None:
    """No Content-Length (chunked transfer encoding): the body is still streamed to disk."""
    run_id = _run(api)
    chunks = [os.urandom(100_000) for _ in range(5)]
    r = api.put(f"/runs/{run_id}/artifacts/streamed.bin", content=iter(chunks))
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 500_000 and r.json()["sha256"] == _sha(b"".join(chunks))


def test_overwrite_same_path_and_audit(api: httpx.Client) -> None:
    run_id = _run(api)
    api.put(f"/runs/{run_id}/artifacts/a.txt", content=b"one")
    r = api.put(f"/runs/{run_id}/artifacts/a.txt", content=b"two!")
    assert r.status_code == 201
    items = api.get(f"/runs/{run_id}/artifacts").json()["items"]
    assert items == [{"path": "a.txt", "is_dir": False, "size": 4, "sha256": _sha(b"two!")}]
    assert api.get(f"/runs/{run_id}/artifacts/a.txt").content == b"two!"
    events = api.get("/audit", params={"target_id": run_id}).json()["items"]
    actions = [e["action"] for e in events if e["action"].startswith("artifact.")]
    assert actions == ["artifact.overwrite", "artifact.create"]
    overwrite = next(e for e in events if e["action"] == "artifact.overwrite")
    assert overwrite["actor"] == "admin"
    assert overwrite["before"]["sha256"] == _sha(b"one")
    assert overwrite["after"]["sha256"] == _sha(b"two!")


@pytest.mark.local_store  # reads or damages the blob files on disk
def test_identical_content_is_stored_once(api: httpx.Client, store: BlobStore) -> None:
    data = os.urandom(50_000)
    run_a, run_b = _run(api), _run(api)
    before = _blobs(store)
    for run_id, path in ((run_a, "x.bin"), (run_a, "copy/x.bin"), (run_b, "y.bin")):
        assert api.put(f"/runs/{run_id}/artifacts/{path}", content=data).status_code == 201
    assert _blobs(store) - before == {_sha(data)}
    shard = store.path_for(_sha(data)).parent
    assert [p.name for p in shard.iterdir() if p.name == _sha(data)] == [_sha(data)]
    assert list(store.tmp_dir.iterdir()) == []


# ---------------------------------------------------------------- listing


def _upload_tree(api: httpx.Client, run_id: str, paths: list[str]) -> None:
    for p in paths:
        assert api.put(f"/runs/{run_id}/artifacts/{p}", content=p.encode()).status_code == 201


TREE = ["a.txt", "b/c.txt", "b/d/e.txt", "b.txt", "b-x/f.txt", "z.txt"]


def test_listing_collapses_directories(api: httpx.Client) -> None:
    run_id = _run(api)
    _upload_tree(api, run_id, TREE)
    items = api.get(f"/runs/{run_id}/artifacts").json()["items"]
    # Byte order: '-' < '.' < '/', so "b-x" and "b.txt" sort before the directory "b".
    assert [(i["path"], i["is_dir"]) for i in items] == [
        ("a.txt", False),
        ("b-x", True),
        ("b.txt", False),
        ("b", True),
        ("z.txt", False),
    ]
    dirs = [i for i in items if i["is_dir"]]
    assert all(i["size"] is None and i["sha256"] is None for i in dirs)
    sub = api.get(f"/runs/{run_id}/artifacts", params={"path": "b"}).json()["items"]
    assert [(i["path"], i["is_dir"]) for i in sub] == [("b/c.txt", False), ("b/d", True)]
    assert api.get(f"/runs/{run_id}/artifacts", params={"path": "b/"}).json()["items"] == sub
    rec = api.get(f"/runs/{run_id}/artifacts", params={"recursive": "true"}).json()["items"]
    assert sorted(i["path"] for i in rec) == sorted(TREE)
    assert all(not i["is_dir"] and i["size"] > 0 for i in rec)
    one = api.get(f"/runs/{run_id}/artifacts", params={"path": "b/d/e.txt"}).json()["items"]
    assert [i["path"] for i in one] == ["b/d/e.txt"]


@pytest.mark.parametrize("recursive", ["true", "false"])
def test_listing_pages_join_up(api: httpx.Client, recursive: str) -> None:
    run_id = _run(api)
    paths = [f"d{i}/f{j}.txt" for i in range(4) for j in range(3)] + [f"top{i}" for i in range(5)]
    _upload_tree(api, run_id, paths)
    full = api.get(
        f"/runs/{run_id}/artifacts", params={"recursive": recursive, "limit": 1000}
    ).json()
    assert full["next_page_token"] is None
    seen, token = [], None
    while True:
        params = {"recursive": recursive, "limit": 2}
        if token:
            params["page_token"] = token
        page = api.get(f"/runs/{run_id}/artifacts", params=params).json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == full["items"]
    assert len(seen) == (17 if recursive == "true" else 9)


def test_listing_bad_inputs(api: httpx.Client) -> None:
    run_id = _run(api)
    _upload_tree(api, run_id, ["a/b.txt"])
    _error(
        api.get(f"/runs/{run_id}/artifacts", params={"page_token": "garbage!"}), 400, "BAD_REQUEST"
    )
    _error(api.get(f"/runs/{run_id}/artifacts", params={"limit": 0}), 422, "VALIDATION_ERROR")
    body = _error(
        api.get(f"/runs/{run_id}/artifacts", params={"path": "a/../etc"}), 422, "VALIDATION_ERROR"
    )
    assert "'..'" in body["message"]
    body = _error(api.get(f"/runs/{run_id}/artifacts", params={"path": "nope"}), 404, "NOT_FOUND")
    assert "'nope'" in body["message"] and "a/b.txt" in body["message"]


def test_empty_run_lists_nothing(api: httpx.Client) -> None:
    run_id = _run(api)
    assert api.get(f"/runs/{run_id}/artifacts").json() == {"items": [], "next_page_token": None}


# ---------------------------------------------------------------- bad input

BAD_PATHS = [
    ("/etc/passwd", "absolute", "absolute"),
    ("a/%2E%2E/b", "'..'", "parent_segment"),
    ("%2E%2E/escape", "'..'", "parent_segment"),
    ("a//b", "empty segment", "empty_segment"),
    ("a/", "empty segment", "empty_segment"),
    ("%2E/a", "'.'", "dot_segment"),
    ("a%00b", "NUL", "nul"),
    ("a%01b", "control character", "control_character"),
    ("a%5Cb", "backslash", "backslash"),
    ("C:/x", "drive letter", "absolute"),
    ("x" * 1025, "1025 characters", "too_long"),
]


def test_bad_artifact_paths_are_refused(api: httpx.Client, store: ArtifactStore) -> None:
    # One test looping over the cases: each would otherwise pay a database reset.
    run_id = _run(api)
    before = _blobs(store)
    for raw, says, reason in BAD_PATHS:
        r = api.put(f"/runs/{run_id}/artifacts/{raw}", content=os.urandom(64))
        body = _error(r, 422, "VALIDATION_ERROR")
        assert says in body["message"], (raw, body)
        assert "relative POSIX" in body["message"], (raw, body)
        assert body["details"]["reason"] == reason, (raw, body)
        _nothing_stored(api, store, run_id, before)
        # Reads use the same rule.
        _error(api.get(f"/runs/{run_id}/artifacts/{raw}"), 422, "VALIDATION_ERROR")


def test_empty_path_is_refused(api: httpx.Client) -> None:
    run_id = _run(api)
    body = _error(api.put(f"/runs/{run_id}/artifacts/", content=b"x"), 422, "VALIDATION_ERROR")
    assert "empty" in body["message"]


def test_wrong_checksum_stores_nothing(api: httpx.Client, store: ArtifactStore) -> None:
    run_id = _run(api)
    before = _blobs(store)
    data = os.urandom(10_000)
    body = _error(
        api.put(
            f"/runs/{run_id}/artifacts/m.bin",
            content=data,
            headers={"X-Content-SHA256": _sha(b"something else")},
        ),
        400,
        "CHECKSUM_MISMATCH",
    )
    assert "do not match X-Content-SHA256" in body["message"]
    assert body["details"]["actual"] == _sha(data)
    _nothing_stored(api, store, run_id, before)
    _error(api.get(f"/runs/{run_id}/artifacts/m.bin"), 404, "NOT_FOUND")


def test_malformed_checksum_header(api: httpx.Client, store: ArtifactStore) -> None:
    run_id = _run(api)
    before = _blobs(store)
    body = _error(
        api.put(
            f"/runs/{run_id}/artifacts/m.bin", content=b"x", headers={"X-Content-SHA256": "md5:abc"}
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert "64 hexadecimal" in body["message"]
    _nothing_stored(api, store, run_id, before)


def test_unknown_run_is_404(api: httpx.Client, store: ArtifactStore) -> None:
    before = _blobs(store)
    body = _error(api.put("/runs/run-doesnotexist/artifacts/a.txt", content=b"x"), 404, "NOT_FOUND")
    assert "run-doesnotexist" in body["message"]
    assert _blobs(store) == before
    _error(api.get("/runs/run-doesnotexist/artifacts"), 404, "NOT_FOUND")
    _error(api.get("/runs/run-doesnotexist/artifacts/a.txt"), 404, "NOT_FOUND")


def test_unknown_artifact_is_404_listing_what_exists(api: httpx.Client) -> None:
    run_id = _run(api)
    _upload_tree(api, run_id, ["model.pt", "dir/x.txt"])
    body = _error(api.get(f"/runs/{run_id}/artifacts/modle.pt"), 404, "NOT_FOUND")
    assert "'modle.pt'" in body["message"] and "'model.pt'" in body["message"]
    assert body["details"]["available"] == ["dir/x.txt", "model.pt"]
    body = _error(api.get(f"/runs/{run_id}/artifacts/dir"), 404, "NOT_FOUND")
    assert "is a directory" in body["message"]


def test_finished_run_is_409(api: httpx.Client, store: ArtifactStore) -> None:
    run_id = _run(api)
    assert api.patch(f"/runs/{run_id}", json={"status": "FINISHED"}).status_code == 200
    before = _blobs(store)
    body = _error(
        api.put(f"/runs/{run_id}/artifacts/late.txt", content=os.urandom(100)), 409, "CONFLICT"
    )
    assert "FINISHED" in body["message"]
    _nothing_stored(api, store, run_id, before)


def test_file_and_directory_cannot_share_a_path(api: httpx.Client) -> None:
    run_id = _run(api)
    _upload_tree(api, run_id, ["model", "dir/x.txt"])
    body = _error(
        api.put(f"/runs/{run_id}/artifacts/model/weights.bin", content=b"w"), 409, "CONFLICT"
    )
    assert "'model' is already a file" in body["message"]
    body = _error(api.put(f"/runs/{run_id}/artifacts/dir", content=b"d"), 409, "CONFLICT")
    assert "already a directory" in body["message"]
    items = api.get(f"/runs/{run_id}/artifacts", params={"recursive": "true"}).json()["items"]
    assert [i["path"] for i in items] == ["dir/x.txt", "model"]


def test_viewer_can_read_but_not_upload(
    api: httpx.Client,
    store: ArtifactStore,
    make_token: Callable[..., str],
    client_for: Callable[[str], httpx.Client],
) -> None:
    run_id = _run(api)
    api.put(f"/runs/{run_id}/artifacts/a.txt", content=b"a")
    viewer = client_for(make_token("viewer"))
    before = _blobs(store)
    body = _error(
        viewer.put(f"/runs/{run_id}/artifacts/b.txt", content=b"b"), 403, "PERMISSION_DENIED"
    )
    assert "editor" in body["message"]
    assert _blobs(store) == before
    assert viewer.get(f"/runs/{run_id}/artifacts/a.txt").content == b"a"
    assert len(viewer.get(f"/runs/{run_id}/artifacts").json()["items"]) == 1
    _error(
        httpx.put(f"{api.base_url}runs/{run_id}/artifacts/c.txt", content=b"c"),
        401,
        "UNAUTHENTICATED",
    )


def test_run_scoped_token_only_writes_its_run(
    api: httpx.Client,
    db: Database,
    make_token: Callable[..., str],
    client_for: Callable[[str], httpx.Client],
) -> None:
    from podstack.server.auth import service as auth_service

    mine, other = _run(api), _run(api)
    make_token("editor", username="jobuser")
    with db.session() as s:
        token = auth_service.create_token(s, "test", "jobuser", "job", scope=f"run:{mine}").value
    job = client_for(token)
    assert job.put(f"/runs/{mine}/artifacts/ok.txt", content=b"ok").status_code == 201
    body = _error(
        job.put(f"/runs/{other}/artifacts/no.txt", content=b"no"), 403, "PERMISSION_DENIED"
    )
    assert mine in body["message"]


# ---------------------------------------------------------------- size limit


@pytest.fixture(scope="module")
def small_server(settings: Settings, db: Database) -> Iterator[LiveServer]:
    """A second live server on the same store and database, with a 1 KiB artifact limit."""
    server = LiveServer(settings.model_copy(update={"max_artifact_bytes": 1024}))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def small_api(small_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=small_server.url + "/api/v1",
        timeout=60,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as c:
        yield c


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
def test_body_over_limit_is_413(
    api: httpx.Client, small_api: httpx.Client, store: ArtifactStore, mode: str
) -> None:
    run_id = _run(api)
    before = _blobs(store)
    data = os.urandom(4096)
    content = data if mode == "content-length" else iter([data[:1000], data[1000:]])
    body = _error(
        small_api.put(f"/runs/{run_id}/artifacts/big.bin", content=content),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert "1024 bytes" in body["message"]
    assert body["details"]["limit_bytes"] == 1024
    _nothing_stored(api, store, run_id, before)
    # At the limit is fine.
    ok = small_api.put(f"/runs/{run_id}/artifacts/ok.bin", content=data[:1024])
    assert ok.status_code == 201, ok.text


# ---------------------------------------------------------------- integrity on download


@pytest.mark.local_store  # reads or damages the blob files on disk
def test_corrupted_blob_fails_the_download(api: httpx.Client, store: BlobStore) -> None:
    run_id = _run(api)
    data = os.urandom(3 * 1024 * 1024 + 17)  # several store chunks
    api.put(f"/runs/{run_id}/artifacts/c.bin", content=data)
    blob = store.path_for(_sha(data))
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, one bit-flipped byte
    received = bytearray()
    try:
        with (
            pytest.raises(httpx.RemoteProtocolError),
            api.stream("GET", f"/runs/{run_id}/artifacts/c.bin") as r,
        ):
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                received += chunk
    finally:
        # The store outlives the test (the worker's session): a damaged blob left in it failed
        # a later `podstack artifacts migrate` of the whole store (tests/s3/test_s3_migrate.py).
        blob.unlink()
    # The verified stream withholds the last chunk, so the client never has the whole body.
    assert len(received) < len(data)


@pytest.mark.local_store  # reads or damages the blob files on disk
def test_truncated_or_missing_blob_is_a_clear_error(api: httpx.Client, store: BlobStore) -> None:
    run_id = _run(api)
    data = os.urandom(1000)
    api.put(f"/runs/{run_id}/artifacts/t.bin", content=data)
    blob = store.path_for(_sha(data))
    blob.write_bytes(data[:10])
    body = _error(api.get(f"/runs/{run_id}/artifacts/t.bin"), 500, "INTEGRITY_ERROR")
    assert "damaged" in body["message"]
    blob.unlink()
    body = _error(api.get(f"/runs/{run_id}/artifacts/t.bin"), 500, "INTEGRITY_ERROR")
    assert "missing" in body["message"]
