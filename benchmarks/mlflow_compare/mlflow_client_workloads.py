"""W1-W6 through MLflow's official Python client. Runs INSIDE benchmarks/.mlflow-venv:

    .mlflow-venv/bin/python mlflow_client_workloads.py '<job json>'

(imports its siblings by path; ``podstack`` is not installed there and must not be needed)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

from client_script import (
    check_searches,
    check_versions,
    check_w1,
    file_sha256,
    in_parallel,
    metric_batches,
    model_name,
    run_script,
    search_loop,
    search_plan,
    team_of,
)
from measure import (
    RssSampler,
    latency_summary,
    make_file,
    measure,
    run_threads,
    timed,
)
from mlflow import MlflowClient
from mlflow.entities import Metric


def _client(job: dict[str, Any]) -> MlflowClient:
    return MlflowClient(tracking_uri=job["url"], registry_uri=job["url"])


def _new_run(c: MlflowClient) -> str:
    exp = c.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
    return c.create_run(exp).info.run_id


def _run_with_artifact(c: MlflowClient, workdir: str) -> tuple[str, str]:
    """A run that logged a small model file; returns (run_id, source URI)."""
    run_id = _new_run(c)
    path = os.path.join(workdir, "model.pkl")
    with open(path, "wb") as f:
        f.write(os.urandom(64 * 1024))
    c.log_artifact(run_id, path)
    return run_id, f"runs:/{run_id}/model.pkl"


def w1(job: dict[str, Any]) -> dict[str, Any]:
    sz, c = job["sizes"], _client(job)
    run_id = _new_run(c)
    sent = metric_batches(sz["w1_keys"], sz["w1_steps"], sz["w1_batch"])
    batches = [[Metric(k, v, t, s) for k, v, s, t in b] for b in sent]
    points = sum(len(b) for b in batches)
    with measure(job["server_pid"]) as m:
        for b in batches:
            c.log_batch(run_id, metrics=b)
    stored = None
    if job.get("verify", True):
        stored = [
            (p.key, p.value, p.step, p.timestamp)
            for k in range(sz["w1_keys"])
            for p in c.get_metric_history(run_id, f"metric_{k:02d}")
        ]
    check = check_w1([p for b in sent for p in b], stored)
    return {
        **m.as_dict(),
        "points": points,
        "stored": None if stored is None else len(stored),
        "rate": points / m.wall_s,
        "check": check,
    }


def w2(job: dict[str, Any]) -> dict[str, Any]:
    sz, c = job["sizes"], _client(job)
    run_id, source = _run_with_artifact(c, job["workdir"])
    name = f"w2-{uuid.uuid4().hex[:8]}"
    c.create_registered_model(name)
    n = sz["w2_versions"]
    with measure(job["server_pid"]) as m:
        last = None
        for _ in range(n):
            last = c.create_model_version(name, source, run_id=run_id)
    stored = [
        int(v.version) for v in c.search_model_versions(f"name = '{name}'", max_results=10_000)
    ]
    check = check_versions(stored, n)
    if int(last.version) != n:
        check["ok"] = False
        check["problems"].append(f"the last create answered version {last.version}, not {n}")
    return {
        **m.as_dict(),
        "versions": n,
        "last": int(last.version),
        "rate": n / m.wall_s,
        "check": check,
    }


def w3(job: dict[str, Any]) -> dict[str, Any]:
    sz, c = job["sizes"], _client(job)
    run_id, source = _run_with_artifact(c, job["workdir"])
    name = f"w3-{uuid.uuid4().hex[:8]}"
    c.create_registered_model(name)
    threads, per = sz["w3_threads"], sz["w3_per_thread"]
    got: list[int] = []
    lock = threading.Lock()
    errors_in_thread: list[str] = []

    def body(_i: int) -> None:
        mine = _client(job)
        for _ in range(per):
            try:
                v = int(mine.create_model_version(name, source, run_id=run_id).version)
                with lock:
                    got.append(v)
            except Exception as exc:
                with lock:
                    errors_in_thread.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    with measure(job["server_pid"]) as m:
        errors = run_threads(threads, body)
    stored = sorted(
        int(v.version) for v in c.search_model_versions(f"name = '{name}'", max_results=10_000)
    )
    expected = list(range(1, threads * per + 1))
    all_errors = errors_in_thread + [repr(e) for e in errors]
    check = check_versions(stored, threads * per)
    if sorted(got) != expected:
        check["ok"] = False
        check["problems"].append(
            f"the creates answered {len(got)} versions, {len(set(got))} distinct"
        )
    if all_errors:
        check["ok"] = False
        check["problems"].append(f"{len(all_errors)} errors, e.g. {all_errors[0][:120]}")
    return {
        **m.as_dict(),
        "check": check,
        "versions": len(got),
        "rate": len(got) / m.wall_s,
        "errors": len(all_errors),
        "error_samples": sorted(set(all_errors))[:5],
        "exact": sorted(got) == expected and stored == expected,
        "stored_versions": len(stored),
        "duplicates": len(got) - len(set(got)),
    }


def w4(job: dict[str, Any]) -> dict[str, Any]:
    sz, c = job["sizes"], _client(job)
    models, teams, n = sz["w4_models"], sz["w4_teams"], sz["w4_searches"]
    t_seed = in_parallel(
        models,
        lambda: _client(job),
        lambda cl, i: cl.create_registered_model(model_name(i), tags={"team": team_of(i, teams)}),
    )
    labels, prefixes = search_plan(models, teams, n)
    cap = sz["w4_search_max_s"]
    with measure(job["server_pid"]) as m:
        lat_label, sizes_l, capped_l, ans_l = search_loop(
            labels,
            lambda team: c.search_registered_models(
                filter_string=f"tags.team = '{team}'", max_results=100
            ),
            cap,
        )
        lat_prefix, sizes_p, capped_p, ans_p = search_loop(
            prefixes,
            lambda p: c.search_registered_models(
                filter_string=f"name LIKE '{p}%'", max_results=100
            ),
            cap,
        )
    label_check = check_searches("label", labels, ans_l, models, teams)
    prefix_check = check_searches("prefix", prefixes, ans_p, models, teams)
    return {
        **m.as_dict(),
        "check": {
            "ok": label_check["ok"] and prefix_check["ok"],
            "problems": label_check["problems"] + prefix_check["problems"],
            "label_digests": label_check["digests"],
            "prefix_digests": prefix_check["digests"],
        },
        "models": models,
        "seed_s": round(t_seed, 2),
        "seeded_via": "client",
        "label": latency_summary(lat_label),
        "prefix": latency_summary(lat_prefix),
        "page_sizes": sorted(sizes_l | sizes_p),
        "capped": {"label": capped_l, "prefix": capped_p},
    }


def w5(job: dict[str, Any]) -> dict[str, Any]:
    sz, c = job["sizes"], _client(job)
    run_id, source = _run_with_artifact(c, job["workdir"])
    name = f"w5-{uuid.uuid4().hex[:8]}"
    c.create_registered_model(name)
    v = c.create_model_version(name, source, run_id=run_id)
    c.set_registered_model_alias(name, "champion", v.version)
    lat: list[float] = []
    with measure(job["server_pid"]) as seq:
        for _ in range(sz["w5_sequential"]):
            dt, got = timed(lambda: c.get_model_version_by_alias(name, "champion"))
            lat.append(dt)
    assert got.version == v.version
    count = [0] * sz["w5_threads"]
    wrong = [0] * sz["w5_threads"]
    duration = sz["w5_seconds"]

    def body(i: int) -> None:
        mine = _client(job)
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            if mine.get_model_version_by_alias(name, "champion").version != v.version:
                wrong[i] += 1
            count[i] += 1

    with measure(job["server_pid"]) as par:
        errors = run_threads(sz["w5_threads"], body)
    problems = [f"{len(errors)} thread errors, e.g. {errors[0]!r:.120}"] if errors else []
    if sum(wrong):
        problems.append(f"{sum(wrong)} lookups answered a version other than {v.version}")
    return {
        "check": {"ok": not problems, "problems": problems, "version": int(v.version)},
        "sequential": {**latency_summary(lat), **seq.as_dict()},
        "threaded": {
            **par.as_dict(),
            "threads": sz["w5_threads"],
            "requests": sum(count),
            "rate": sum(count) / par.wall_s,
            "errors": len(errors),
            "wrong_version": sum(wrong),
        },
    }


def w6(job: dict[str, Any]) -> dict[str, Any]:
    sz, c = job["sizes"], _client(job)
    size = sz["w6_mib"] * 2**20
    src = os.path.join(job["shared_dir"], "w6-payload.bin")
    make_file(src, size)
    run_id = _new_run(c)
    with RssSampler(job["server_pid"]) as up_rss, measure(job["server_pid"]) as up:
        c.log_artifact(run_id, src)
    dst = os.path.join(job["workdir"], "w6-download")
    os.makedirs(dst, exist_ok=True)
    with RssSampler(job["server_pid"]) as down_rss, measure(job["server_pid"]) as down:
        out = c.download_artifacts(run_id, "w6-payload.bin", dst)
    ok = os.path.getsize(out) == size
    sent_sha, got_sha = file_sha256(src), file_sha256(out)
    os.remove(out)
    mib = size / 2**20
    problems = [] if got_sha == sent_sha else ["downloaded file's sha256 differs from the upload"]
    return {
        "check": {"ok": not problems, "problems": problems, "sha256": got_sha},
        "size_mib": mib,
        "upload": {**up.as_dict(), "rate": mib / up.wall_s, "rss_growth_mib": up_rss.growth_mib},
        "download": {
            **down.as_dict(),
            "rate": mib / down.wall_s,
            "rss_growth_mib": down_rss.growth_mib,
            "verified_size": ok,
        },
    }


if __name__ == "__main__":
    run_script({"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6})
