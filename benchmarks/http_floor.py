"""The HTTP floor: what one request costs before any endpoint work, on this machine.

Issue 8 asks for W4 and W5 latencies at 1/10 of MLflow's (about 1.4-1.7 ms for a search page,
0.4-0.6 ms for an alias lookup). This measures, against a real ``podstack server`` (SQLite,
one worker), the p50 of requests that do (almost) nothing, through the same client stack the
SDK uses:

- ``healthz``: ``GET /healthz`` (no auth, no database): middleware, routing, response;
- ``me``: ``GET /api/v1/me``: the above plus authentication (a cached token) and a sync
  endpoint's worker-thread hop, no database;
- ``alias``: ``client.get_model_by_alias`` (one indexed query), for comparison;

each through the SDK's light JSON path (urllib3) and, for ``healthz``, through httpx. If the
empty request already costs more than a target allows, the target is below what any endpoint
behind this HTTP stack can reach here.

    python -m benchmarks.run http_floor
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _p50_ms(fn: Callable[[], Any], n: int) -> float:
    for _ in range(min(100, n)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return round(statistics.median(samples) * 1000, 3)


def main(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from benchmarks.mlflow_compare.podstack_env import ADMIN_TOKEN, start_server
    from podstack import MLOpsClient
    from podstack.client.json_http import JsonHttp

    quick = bool(getattr(args, "quick", False)) or os.environ.get("BENCH_QUICK") == "1"
    n = 300 if quick else 2000
    with tempfile.TemporaryDirectory(prefix="podstack-bench-floor-") as tmp:
        work = Path(tmp)
        server = start_server(f"sqlite:///{work / 'floor.db'}", work)
        try:
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            light = JsonHttp(server.url, auth, 30.0)
            heavy = httpx.Client(base_url=server.url, headers=auth)
            client = MLOpsClient(api_token=ADMIN_TOKEN, url=server.url)
            run = client.create_run(f"floor-{uuid.uuid4().hex[:6]}")
            model_file = work / "model.pkl"
            model_file.write_bytes(os.urandom(64 * 1024))
            client.log_artifact(run.id, str(model_file))
            client.register_model(name="floor-model")
            v = client.create_model_version(
                model_name="floor-model", source_run_id=run.id, artifact_path="model.pkl"
            )
            client.set_model_alias(model_name="floor-model", alias="champion", version=v.version)
            p50 = {
                "healthz_sdk_light_path": _p50_ms(lambda: light.request("GET", "/healthz"), n),
                "healthz_httpx": _p50_ms(lambda: heavy.get("/healthz"), n),
                "me_sdk_light_path": _p50_ms(lambda: light.request("GET", "/api/v1/me"), n),
                "alias_sdk": _p50_ms(
                    lambda: client.get_model_by_alias(model_name="floor-model", alias="champion"),
                    n,
                ),
            }
            light.close()
            heavy.close()
            client.close()
        finally:
            server.stop()
    result = {"requests_per_kind": n, "p50_ms": p50}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_floor.json").write_text(json.dumps(result, indent=2) + "\n")
    for kind, ms in p50.items():
        print(f"  {kind:<24} p50 {ms:.3f} ms", file=sys.stderr)
    return result
