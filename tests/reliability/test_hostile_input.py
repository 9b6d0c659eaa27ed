"""Hostile input, by name: path traversal and absolute paths (server side and in SDK download
destinations), SQL metacharacters in every search and filter, HTML/JS in every free-text
field the UI renders, oversized bodies and headers, deeply nested JSON, invalid UTF-8 and
absurd pagination. Never a 5xx; always a clear 4xx (or a harmless answer); nothing changes and
nothing is written where it should not be.

Sweeps are driven by the OpenAPI document and the app's routes, so new endpoints are covered
as they land. (schemathesis, in test_api_fuzz.py, adds generated inputs on top.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from podstack import MLOpsClient
from podstack.errors import ValidationFailed
from podstack.server.artifacts.store import BlobStore
from podstack.server.auth.models import User
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.tracking.models import Experiment
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.reliability.conftest import record
from tests.reliability.test_access_control import TABLE
from tests.reliability.world import MODEL, World, build, path_for

# Figures for RELIABILITY.md: how many hostile requests each sweep made.
TRIED: dict[str, int] = {}


def _count(kind: str, n: int = 1) -> None:
    TRIED[kind] = TRIED.get(kind, 0) + n


@pytest.fixture(scope="module", autouse=True)
def _record_figures() -> Iterator[None]:
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    record(f"hostile-input-{worker}", {**TRIED, "total": sum(TRIED.values())})


def raw_http(port: int, request: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Sends bytes exactly as given (no client-side URL normalisation) and returns the
    status and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"content-length: (\d+)", head, re.I)
            if m and len(body) >= int(m.group(1)):
                break
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def _request(method: str, target: str, body: bytes = b"", token: str = ADMIN_TOKEN) -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@pytest.fixture
def world(live_server: LiveServer, db: Database, tmp_path: Path) -> World:
    return build(live_server.url, tmp_path, tag="hostile")


def _row_counts(db: Database) -> tuple[int, int]:
    with db.session(readonly=True) as s:
        return (
            s.scalar(select(func.count()).select_from(User)) or 0,
            s.scalar(select(func.count()).select_from(Experiment)) or 0,
        )


# ---------------------------------------------------------------- artifact paths (server)

TRAVERSAL = [
    "../escape.txt",
    "a/../../escape.txt",
    "..",
    "./escape.txt",
    "a/./escape.txt",
    "/etc/passwd",
    "//etc/passwd",
    "C:/escape.txt",
    "a\\..\\..\\escape.txt",
    "a//escape.txt",
    "a/escape.txt/",
    "a\x00b",
    "a\x1b[31mred",
    "x" * 2000,
]


def _encoded(path: str) -> list[str]:
    """Ways to put ``path`` in a URL: raw, and with every character of a segment escaped
    (``%2e%2e`` for ``..``), which some servers decode after routing."""
    raw = "/".join(quote(seg, safe=".") for seg in path.split("/"))
    escaped = "/".join("".join(f"%{b:02x}" for b in seg.encode()) for seg in path.split("/"))
    return [raw, escaped]


# Looks for a stray file on this disk, beside the local store.
@pytest.mark.local_store
def test_artifact_paths_cannot_escape_the_run(
    world: World, live_server: LiveServer, settings: Settings, tmp_path: Path
) -> None:
    run_id = world.ids["run_id"]
    marker = f"pwned-{uuid.uuid4().hex}".encode()
    port = live_server.port
    for path in TRAVERSAL:
        for target in _encoded(path):
            url = f"/api/v1/runs/{run_id}/artifacts/{target}"
            status, body = raw_http(port, _request("PUT", url, marker))
            _count("artifact path traversal")
            assert status in (400, 404, 405, 422), (path, target, status, body[:200])
            status, body = raw_http(port, _request("GET", url))
            _count("artifact path traversal")
            assert status in (400, 404, 405, 422), (path, target, status, body[:200])
            assert b"root:" not in body
    # Version files, too.
    for path in ("../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"):
        url = f"/api/v1/registered-models/{MODEL}/versions/1/files/{path}"
        status, body = raw_http(port, _request("GET", url))
        _count("artifact path traversal")
        assert status in (400, 404, 422) and b"root:" not in body, (path, status)
    # Nothing was stored anywhere: no row, no blob of the marker, no stray file.
    with MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url) as c:
        assert [a.path for a in c.list_artifacts(run_id, recursive=True)] == ["model.bin"]
    digest = hashlib.sha256(marker).hexdigest()
    assert not BlobStore(settings.artifacts_path).exists(digest)
    for root in (settings.home, settings.artifacts_path.parent, Path("/tmp")):
        assert not list(root.glob("escape.txt")), root


def test_version_artifact_path_cannot_escape_the_run(world: World, api: httpx.Client) -> None:
    # (A trailing "/" names a directory prefix, which is fine: it just matches nothing.)
    for path in [*(p for p in TRAVERSAL if not p.endswith("/")), "model.bin/../../x"]:
        r = api.post(
            f"/registered-models/{MODEL}/versions",
            json={"source_run_id": world.ids["run_id"], "artifact_path": path},
        )
        _count("version artifact_path traversal")
        assert r.status_code == 422, (path, r.status_code, r.text[:200])
        assert r.json()["error"]["code"] == "VALIDATION_ERROR"
        assert "artifact" in r.json()["error"]["message"].lower()
    versions = api.get(f"/registered-models/{MODEL}/versions").json()["items"]
    assert len(versions) == 4  # the world's, none added


# ---------------------------------------------------------------- download destinations (SDK)


def test_sdk_download_never_writes_through_a_symlink_out_of_the_destination(
    world: World, live_server: LiveServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    evil = tmp_path / "evil.txt"
    evil.write_text("written through a symlink")
    with MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url) as c:
        run = c.create_run("symlinks")
        c.log_artifact(run.id, evil, "link")
        v = c.create_model_version("symlinked", run.id, "")
        for download in (
            lambda: c.download_artifacts(run.id, "", dest),
            lambda: c.download_artifacts(run.id, "link/evil.txt", dest),
            lambda: c.download_model_version("symlinked", v.version, dest),
        ):
            with pytest.raises(ValidationFailed, match="outside"):
                download()
            _count("SDK download destination escape")
    assert list(outside.iterdir()) == []


class HostileServer:
    """A fake Podstack that lists artifact and version files with escaping paths, to prove
    the SDK trusts nothing a server says about where files go."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.downloads: list[str] = []
        outer = self
        content = b"hostile bytes"
        digest = hashlib.sha256(content).hexdigest()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.endswith("/artifacts") or path.endswith("/files"):
                    entries = [
                        {"path": p, "is_dir": False, "size": len(content), "sha256": digest}
                        for p in outer.paths
                    ]
                    payload = json.dumps(
                        {"items": entries, "next_page_token": None}
                        if path.endswith("/artifacts")
                        else entries
                    ).encode()
                    ctype = "application/json"
                else:
                    outer.downloads.append(path)
                    payload, ctype = content, "application/octet-stream"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile_listing(tmp_path: Path) -> Iterator[tuple[HostileServer, Path]]:
    absolute = tmp_path / "absolute-target.txt"
    server = HostileServer(
        ["ok.txt", "../escaped.txt", "a/../../escaped.txt", str(absolute), "..\\escaped.txt"]
    )
    yield server, absolute
    server.close()


def test_sdk_refuses_a_hostile_servers_escaping_paths(
    hostile_listing: tuple[HostileServer, Path], tmp_path: Path
) -> None:
    server, absolute = hostile_listing
    dest = tmp_path / "inbox" / "dest"
    dest.mkdir(parents=True)
    with MLOpsClient(api_token="pst_x", url=server.url) as c:
        for download in (
            lambda: c.download_artifacts("run-1", "", dest),
            lambda: c.download_model_version("m", 1, dest),
        ):
            with pytest.raises(ValidationFailed):
                download()
            _count("SDK download destination escape")
    # Every target is checked before the first byte is fetched: nothing at all was written.
    assert server.downloads == []
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "inbox" / "escaped.txt").exists()
    assert not absolute.exists()


# ---------------------------------------------------------------- SQL metacharacters

SQL_PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "') UNION SELECT username, NULL FROM users --",
    "%",
    "_",
    "%' OR '%'='",
    "\\",
    "\\'",
    "*/ OR /*",
    "$1",
    ":name",
    "1; SELECT pg_sleep(3)",
    "名前' --",
    "a\x00b",
]


def _openapi(api: httpx.Client) -> dict[str, Any]:
    return api.get("/openapi.json").json()


def _string_query_params(op: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    names = []
    for p in op.get("parameters", []):
        if p.get("in") != "query":
            continue
        schema = p.get("schema", {})
        alternatives = [*schema.get("anyOf", []), schema.get("items", {})]
        types = {schema.get("type")} | {s.get("type") for s in alternatives}
        if "string" in types and not schema.get("enum") and schema.get("format") != "date-time":
            names.append(p["name"])
    return names


def test_sql_metacharacters_in_every_query_filter(
    world: World, api: httpx.Client, db: Database
) -> None:
    """Every string query parameter of every GET operation, with every payload: a 2xx or a
    clear 4xx, never a 5xx, and the database intact."""
    spec = _openapi(api)
    before = _row_counts(db)
    failures = []
    for template, ops in spec["paths"].items():
        op = ops.get("get")
        if not op:
            continue
        params = _string_query_params(op, spec)
        path = path_for("GET", template, world).removeprefix("/api/v1")
        for name in params:
            for payload in SQL_PAYLOADS:
                r = api.get(path, params={name: payload})
                _count("SQL metacharacters in filters")
                if r.status_code >= 500 and not template.startswith("/api/v1/endpoints/"):
                    failures.append(f"GET {template}?{name}={payload!r}: {r.status_code}")
                elif r.status_code >= 400 and r.status_code != 503:
                    err = r.json().get("error")
                    if not isinstance(err, dict) or not err.get("message"):
                        failures.append(f"GET {template}?{name}: unclear error {r.text[:100]}")
    assert failures == [], "\n".join(failures)
    assert _row_counts(db) == before


def test_sql_metacharacters_match_nothing_in_searches(world: World, api: httpx.Client) -> None:
    """Searches treat metacharacters as text: no payload matches the world's objects."""
    for payload in SQL_PAYLOADS:
        for path, params in (
            ("/experiments", {"q": payload}),
            ("/registered-models", {"q": payload}),
            ("/audit", {"actor": payload}),
            ("/audit", {"target_id": payload}),
            ("/approval-requests", {"model_name": payload}),
            ("/approval-requests", {"requester": payload}),
        ):
            r = api.get(path, params=params)
            _count("SQL metacharacters in searches")
            assert r.status_code in (200, 422), (path, payload, r.status_code, r.text[:200])
            if r.status_code == 200:
                assert r.json()["items"] == [], (path, payload)
            else:
                assert "NUL" in r.json()["error"]["message"] or payload == "a\x00b"


RUN_FILTERS = [
    "params.lr = '' OR '1'='1'",
    "params.lr = '0.1' OR 1=1",
    "params.lr = '0.1'; DROP TABLE runs; --",
    "metrics.loss > 0 UNION SELECT * FROM users",
    "params.`lr'; --` = 'x'",
    "tags.team = 'acl'' OR ''1''=''1'",
    "tags.team LIKE '%'",
    "attributes.run_name = '%'",
    "params.lr = '%'",
    "metrics.`loss` > 0 -- comment",
    'params.lr = "\' OR 1=1"',
    "metrics.loss > 1e999999",
    "metrics.loss > 'x'",
    "params.lr = 'a\x00b'",
]


def test_sql_metacharacters_in_run_search(world: World, api: httpx.Client, db: Database) -> None:
    before = _row_counts(db)
    exp = world.ids["experiment_id"]
    for expression in RUN_FILTERS:
        r = api.post("/runs/search", json={"experiment_ids": [exp], "filter": expression})
        _count("SQL metacharacters in run search")
        assert r.status_code in (200, 400, 422), (expression, r.status_code, r.text[:300])
        if r.status_code == 200:
            assert r.json()["items"] == [], expression
        else:
            assert r.json()["error"]["message"], expression
    for payload in SQL_PAYLOADS:
        for kind in ("param", "tag", "metric", "attribute"):
            cond = {"kind": kind, "key": "lr" if kind != "attribute" else "run_name"}
            r = api.post(
                "/runs/search",
                json={
                    "experiment_ids": [exp],
                    "conditions": [{**cond, "op": "=", "value": payload}],
                },
            )
            _count("SQL metacharacters in run search")
            assert r.status_code in (200, 400, 422), (kind, payload, r.status_code, r.text[:300])
            if r.status_code == 200:
                assert r.json()["items"] == [], (kind, payload)
    # Sanity: the same search with honest values does find the run.
    r = api.post("/runs/search", json={"experiment_ids": [exp], "filter": "params.lr = '0.1'"})
    assert [x["id"] for x in r.json()["items"]] == [world.ids["run_id"]]
    assert _row_counts(db) == before


def test_sql_metacharacters_in_path_parameters(world: World, api: httpx.Client) -> None:
    """Names and ids taken from the path are values, not SQL: each payload names nothing."""
    spec = _openapi(api)
    failures = []
    for template, ops in spec["paths"].items():
        if "get" not in ops or "{" not in template or "/endpoints/" in template:
            continue
        for payload in SQL_PAYLOADS[:6]:
            path = re.sub(r"\{[^}]+\}", quote(payload, safe=""), template.removeprefix("/api/v1"))
            r = api.get(path)
            _count("SQL metacharacters in path parameters")
            if r.status_code not in (400, 404, 422):
                failures.append(f"GET {template} with {payload!r}: {r.status_code}")
    assert failures == [], "\n".join(failures)


# ---------------------------------------------------------------- HTML/JS in the UI

XSS = "<script>alert(1)</script>"
XSS_NO_SLASH = "<img src=x onerror=alert(1)>"  # for fields that refuse '/'
ATTR = '"><svg onload=alert(1)>'


def _plant_xss(live_server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """Puts script in every free-text field reachable through the API; returns the ids of
    what it created (to visit their pages)."""
    ids: dict[str, str] = {}
    h = httpx.Client(
        base_url=live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    text = f"{XSS} {ATTR}"
    r = h.post(
        "/experiments",
        json={"name": f"exp {XSS_NO_SLASH}", "description": text, "tags": {"t": text}},
    )
    assert r.status_code == 201, r.text
    ids["experiment_id"] = r.json()["id"]
    r = h.post(
        "/runs",
        json={
            "experiment_id": ids["experiment_id"],
            "run_name": f"run {XSS}",
            "tags": {"note": text},
            "notes": text,
        },
    )
    assert r.status_code == 201, r.text
    run_id = ids["run_id"] = r.json()["id"]
    assert h.post(f"/runs/{run_id}/params", json={"params": {"p": text}}).status_code < 300
    assert h.post(f"/runs/{run_id}/metrics", json={"metrics": {"m": 1.0}}).status_code < 300
    r = h.post(f"/runs/{run_id}/datasets", json={"name": text, "source_uri": f"javascript:{XSS}"})
    assert r.status_code < 300, r.text
    r = h.put(f"/runs/{run_id}/artifacts/{quote(XSS_NO_SLASH)}.txt", content=text.encode())
    assert r.status_code == 201, r.text
    r = h.post("/registered-models", json={"name": "xss-model", "description": text, "tags": []})
    assert r.status_code == 201, r.text
    for _ in range(2):
        r = h.post(
            "/registered-models/xss-model/versions",
            json={
                "source_run_id": run_id,
                "artifact_path": "",
                "description": text,
                "tags": {"k": text},
            },
        )
        assert r.status_code == 201, r.text
    r = h.post("/users", json={"username": "xss-user", "role": "viewer", "display_name": text})
    assert r.status_code == 201, r.text
    r = h.post("/tokens", json={"name": text})
    assert r.status_code == 201, r.text
    r = h.post("/groups", json={"name": "xss-group", "description": text, "members": []})
    assert r.status_code == 201, r.text
    r = h.put(
        "/registered-models/xss-model/approval-policy",
        json={"gated_stages": ["Production"], "reviewers": [], "required_approvals": 1},
    )
    assert r.status_code == 200, r.text
    r = h.post("/users", json={"username": "xss-editor", "role": "editor"})
    editor_token = h.post("/tokens", json={"name": "x", "username": "xss-editor"}).json()["token"]
    e = httpx.Client(
        base_url=live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {editor_token}"},
        timeout=30,
    )
    r = e.post(
        "/registered-models/xss-model/versions/1/stage",
        json={"stage": "Production", "note": text},
    )
    assert r.status_code == 202, r.text
    ids["request_id"] = r.json()["pending_request"]["id"]
    r = e.post(f"/approval-requests/{ids['request_id']}/comments", json={"body": text})
    assert r.status_code == 201, r.text
    r = h.post(
        "/schedules",
        json={
            "name": "xss-schedule",
            "experiment_id": ids["experiment_id"],
            "cron": "0 3 * * *",
            "description": text,
            "executor": {"type": "webhook", "url": "http://127.0.0.1:9/", "secret": "s" * 32},
        },
    )
    assert r.status_code == 201, r.text
    e.close()
    h.close()
    return ids


def test_html_in_every_free_text_field_is_escaped_in_the_ui(
    live_server: LiveServer, db: Database, tmp_path: Path
) -> None:
    ids = _plant_xss(live_server, tmp_path)
    values = {
        "ref": ids["experiment_id"],
        "run_id": ids["run_id"],
        "name": "xss-model",
        "version": "1",
        "request_id": ids["request_id"],
    }
    pages = []

    for key in TABLE:
        method, template = key.split(" ", 1)
        if method != "GET" or template.startswith(("/api/", "/healthz", "/readyz", "/metrics")):
            continue
        if template in ("/{path:path}",) or "notification_id" in template:
            continue
        params = re.findall(r"\{([^}:]+)(?::path)?\}", template)
        if any(p not in values for p in params):
            continue  # pages of objects the planted set has none of (deployments)
        path = template
        for p in params:
            path = re.sub(r"\{" + p + r"(?::path)?\}", quote(values[p], safe=""), path)
        if template.startswith("/schedules/{ref}"):
            path = "/schedules/xss-schedule"
        pages.append(path)
    pages += [
        "/models/xss-model/compare?v=1&v=2",
        f"/experiments/{ids['experiment_id']}?q={quote(XSS)}",
        f"/models?q={quote(XSS)}",
        f"/login?next={quote(XSS)}",
        "/settings/tokens?all=true",
        f"/no-such-page/{quote(XSS)}",
    ]
    bad = []
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as ui:
        for path in pages:
            r = ui.get(path)
            _count("HTML/JS payloads rendered by the UI")
            if r.status_code >= 500:
                bad.append(f"{path}: {r.status_code}")
            if r.is_redirect:
                continue
            if not r.headers.get("content-type", "").startswith("text/html"):
                # A download (zip, octet-stream, as an attachment): never rendered as a page.
                assert "attachment" in r.headers.get("content-disposition", ""), path
                continue
            body = r.text
            for raw in (XSS, XSS_NO_SLASH, "<svg onload=alert(1)>"):
                if raw in body:
                    bad.append(f"{path}: unescaped {raw!r}")
            if re.search(r"""href=["']?\s*javascript:""", body, re.I):
                bad.append(f"{path}: javascript: link")
    assert bad == [], "\n".join(bad)
    assert len(pages) >= 10, pages


# ---------------------------------------------------------------- sizes, nesting, encodings


def test_oversized_json_body_is_413_and_creates_nothing(
    api: httpx.Client, db: Database, settings: Settings
) -> None:
    before = _row_counts(db)
    big = json.dumps({"name": "big", "description": "x" * (2 * settings.max_body_bytes)})
    r = api.post("/experiments", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert str(settings.max_body_bytes) in r.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: caught while streaming
        yield big[:1000].encode()
        yield big[1000:].encode()

    r = api.post("/experiments", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    _count("oversized bodies", 2)
    assert _row_counts(db) == before


def test_oversized_artifact_is_413_and_leaves_nothing(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    limited = settings.model_copy(
        update={"max_artifact_bytes": 256 * 1024, "home": tmp_path, "artifacts_uri": str(tmp_path)}
    )
    server = LiveServer(limited)
    server.start()
    try:
        with MLOpsClient(api_token=ADMIN_TOKEN, url=server.url) as c:
            run = c.create_run("limits")
        store = BlobStore(tmp_path)
        with httpx.Client(
            base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as h:
            url = f"/runs/{run.id}/artifacts/big.bin"
            declared = h.put(url, content=b"x" * (1 << 20))  # Content-Length says too much

            def stream() -> Iterator[bytes]:
                for _ in range(16):
                    yield b"y" * (64 * 1024)

            streamed = h.put(url, content=stream())  # discovered while streaming
            for r in (declared, streamed):
                assert r.status_code == 413, r.text
                assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
            _count("oversized bodies", 2)
            assert h.get(f"/runs/{run.id}/artifacts").json()["items"] == []
        assert list(store.iter_digests()) == []
        assert list(store.tmp_dir.iterdir()) == []
    finally:
        server.stop()


@pytest.mark.parametrize("size", [100 * 1024, 1024 * 1024, 16 * 1024 * 1024])
def test_oversized_headers_are_431_and_the_server_carries_on(
    live_server: LiveServer, size: int
) -> None:
    status, body = raw_http(
        live_server.port,
        b"GET /api/v1/me HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * size + b"\r\n\r\n",
    )
    _count("oversized headers")
    assert status in (400, 431), status
    if status == 431:
        assert json.loads(body)["error"]["code"] == "REQUEST_HEADERS_TOO_LARGE"
    assert httpx.get(live_server.url + "/healthz").status_code == 200


def test_many_headers_are_refused(live_server: LiveServer) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
    status, _ = raw_http(
        live_server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"
    )
    _count("oversized headers")
    assert status in (400, 431)


NESTED = {
    "array": "[" * 100_000 + "]" * 100_000,
    "object": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "in a field": '{"name": "n", "tags": ' + '{"a":' * 50_000 + '"x"' + "}" * 50_000 + "}",
}


@pytest.mark.parametrize("shape", sorted(NESTED))
def test_deeply_nested_json_is_a_clear_400(
    api: httpx.Client, db: Database, world: World, shape: str
) -> None:
    before = _row_counts(db)
    for method, path in (
        ("POST", "/experiments"),
        ("POST", "/runs/search"),
        ("POST", f"/runs/{world.ids['run_id']}/params"),
        ("PUT", "/approval-policy"),
        ("POST", "/approval-requests"),
        ("POST", "/schedules"),
        ("POST", "/webhooks"),
    ):
        r = api.request(
            method, path, content=NESTED[shape], headers={"content-type": "application/json"}
        )
        _count("deeply nested JSON")
        assert r.status_code in (400, 422), (method, path, r.status_code, r.text[:200])
        assert r.json()["error"]["message"]
    assert _row_counts(db) == before


INVALID_UTF8 = [b'{"name": "\xff\xfe"}', b'{"name": "\xc3\x28"}', b'{"na\xe9me": "x"}', b"\x80"]


def test_invalid_utf8_bodies_are_400(api: httpx.Client, db: Database) -> None:
    before = _row_counts(db)
    for body in INVALID_UTF8:
        for path in ("/experiments", "/registered-models", "/runs/search"):
            r = api.post(path, content=body, headers={"content-type": "application/json"})
            _count("invalid UTF-8")
            assert r.status_code == 400, (path, body, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert _row_counts(db) == before


def test_invalid_utf8_in_urls_is_never_a_5xx(world: World, live_server: LiveServer) -> None:
    for target in (
        "/api/v1/experiments/%ff%fe",
        "/api/v1/experiments?q=%ff",
        f"/api/v1/runs/{world.ids['run_id']}/artifacts/%ff.bin",
        f"/api/v1/registered-models/{MODEL}%c3%28",
        "/models/%ff",
        "/experiments?q=%c3%28",
    ):
        status, body = raw_http(live_server.port, _request("GET", target))
        _count("invalid UTF-8")
        assert status < 500, (target, status, body[:200])


HUGE_LIMITS = ["1000000000000", str(10**30), "-1", "0", "abc", "1e3", "NaN", "99999999999999999999"]
# Not base64, base64 of '{"x": 1}', of NUL bytes, of 'null': undecodable as a page position.
BAD_TOKENS = ["garbage", "eyJ4IjogMX0", "A" * 5000, "%00", "bnVsbA"]
# Decodable but nonsensical ([[[[[[]]]]]], ["'; DROP TABLE users; --"]): any answer but a 5xx.
ODD_TOKENS = ["W1tbW1tbXV1dXV1d", "WyInOyBEUk9QIFRBQkxFIHVzZXJzOyAtLSJd"]


def test_huge_or_absurd_pagination_is_a_clear_4xx_everywhere(
    world: World, api: httpx.Client
) -> None:
    """Every list operation with ``limit``/``page_token`` (from the OpenAPI document)."""
    spec = _openapi(api)
    failures = []
    listed = 0
    for template, ops in spec["paths"].items():
        op = ops.get("get")
        if not op:
            continue
        names = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
        path = path_for("GET", template, world).removeprefix("/api/v1")
        if "limit" in names:
            listed += 1
            for value in HUGE_LIMITS:
                r = api.get(path, params={"limit": value})
                _count("absurd pagination")
                if r.status_code not in (400, 422):
                    failures.append(f"{template}?limit={value}: {r.status_code}")
        if "page_token" in names:
            for value in BAD_TOKENS:
                r = api.get(path, params={"page_token": value})
                _count("absurd pagination")
                if r.status_code not in (400, 422):
                    failures.append(f"{template}?page_token={value[:20]}: {r.status_code}")
            for value in ODD_TOKENS:
                r = api.get(path, params={"page_token": value})
                _count("absurd pagination")
                if r.status_code >= 500:
                    failures.append(f"{template}?page_token={value[:20]}: {r.status_code}")
    for body in ({"limit": 10**12}, {"limit": -1}, {"page_token": "garbage"}):
        r = api.post("/runs/search", json=body)
        _count("absurd pagination")
        if r.status_code not in (400, 422):
            failures.append(f"POST /runs/search {body}: {r.status_code}")
    assert failures == [], "\n".join(failures)
    assert listed >= 10
