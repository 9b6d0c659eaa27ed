"""Ranged downloads (206), which the SDK uses to resume a cut download."""

from __future__ import annotations

import hashlib
import os

import httpx

from tests.server.registry.helpers import make_run, new_version

DATA = os.urandom(2 * 1024 * 1024 + 333)


def _paths(api: httpx.Client) -> list[str]:
    run = make_run(api, {"model.bin": DATA})
    new_version(api, "ranged", run, "model.bin")
    return [
        f"/runs/{run}/artifacts/model.bin",
        "/registered-models/ranged/versions/1/files/model.bin",
    ]


def test_open_and_closed_ranges_answer_206(api: httpx.Client) -> None:
    for path in _paths(api):
        full = api.get(path)
        assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
        assert full.content == DATA
        r = api.get(path, headers={"Range": "bytes=1048576-"})
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes 1048576-{len(DATA) - 1}/{len(DATA)}"
        assert r.content == DATA[1048576:]
        assert int(r.headers["content-length"]) == len(DATA) - 1048576
        # The digest header is the whole file's, for the client's final check.
        assert r.headers["x-content-sha256"] == hashlib.sha256(DATA).hexdigest()
        r = api.get(path, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == DATA[10:20]
        assert r.headers["content-range"] == f"bytes 10-19/{len(DATA)}"


def test_unsatisfiable_and_unsupported_ranges(api: httpx.Client) -> None:
    for path in _paths(api):
        r = api.get(path, headers={"Range": f"bytes={len(DATA)}-"})
        assert r.status_code == 416
        assert r.headers["content-range"] == f"bytes */{len(DATA)}"
        # Several ranges, suffix ranges, other units: ignored, the whole file (RFC 9110).
        for header in ("bytes=0-1,5-6", "bytes=-100", "items=0-1"):
            r = api.get(path, headers={"Range": header})
            assert r.status_code == 200 and r.content == DATA
