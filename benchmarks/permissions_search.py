"""Model search under permissions, over 10,000 registered models with mixed grants (issue 21:
"search results never contain unreadable models ... filtering by permission must keep search
under 2x today's").

The models, labels and versions are those of ``registry_search`` (bulk-inserted through the
database layer). On top, for one restricted editor, ``alice``, in directory group
``ml-team``: 1 model in 50 is owned by her, 1 in 50 granted to her, 1 in 50 granted to her
group, and about 1 in 4 granted to other users and groups (rows of ``resource_grants`` she
must not match); the rest (about 94%) she cannot read. Two real ``podstack server``
processes share the database, one with ``PODSTACK_DEFAULT_PERMISSION=MANAGE`` (today's
behaviour: no filter) and one with ``NONE``, and the same searches are timed, interleaved
in several rounds:

- (a) ``manage``: alice on the MANAGE server (sees everything, nothing filtered);
- (b) ``restricted``: alice on the NONE server (every search narrowed to what she reads);
- (c) ``admin``: the admin on the NONE server (admins bypass the filter).

Every restricted answer is checked: it must contain only models alice can read, and paging
through the whole list must return exactly those. The figures go to the
``permissions-search`` section of ``benchmarks/RESULTS.md``.

    python -m benchmarks.run permissions_search            # 10,000 models
    python -m benchmarks.run permissions_search --quick    # 2,000 models, fewer searches
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import registry_search as rs
from benchmarks import sections

USER = "alice"
GROUP = "ml-team"
KINDS = ("list", "name_text", "label", "stage", "sort_updated")
ROUNDS = 3


@dataclass
class Mix:
    token: str
    admin_token: str
    readable: set[str]  # names of the models USER may read
    grants: int  # rows in resource_grants


def grant_mix(db_url: str, n_models: int) -> Mix:
    """Creates USER (an editor, in directory group GROUP) and the grants described in the
    module docstring on the models ``registry_search.seed`` created; returns her token and
    the names she may read. Bulk inserts, as the seeding does."""
    from sqlalchemy import insert, select, text, update

    from podstack.server.auth import groups
    from podstack.server.auth import service as auth_service
    from podstack.server.db.session import Database
    from podstack.server.permissions.models import ResourceGrant
    from podstack.server.registry.models import RegisteredModel

    db = Database(db_url, pool_size=1)
    now = datetime.now(UTC)
    readable: set[str] = set()
    rows: list[dict[str, Any]] = []
    try:
        with db.session() as s:
            auth_service.create_user(s, "bench", USER, role="editor")
            token = auth_service.create_token(s, "bench", USER, "bench").value
            # The server's bootstrap admin is only made on an empty users table.
            auth_service.create_user(s, "bench", "root", role="admin")
            admin_token = auth_service.create_token(s, "bench", "root", "bench").value
            for other in ("bob", "carol"):
                auth_service.create_user(s, "bench", other, role="editor")
            groups.replace_memberships(s, "bench", auth_service.get_user(s, USER), [GROUP])
            groups.replace_memberships(s, "bench", auth_service.get_user(s, "bob"), ["team-b"])
        with db.session() as s:
            ids = dict(s.execute(select(RegisteredModel.name, RegisteredModel.id)).all())
            owned = [rs._name(i) for i in range(0, n_models, 50)]
            s.execute(
                update(RegisteredModel)
                .where(RegisteredModel.name.in_(owned))
                .values(created_by=USER)
            )
            readable.update(owned)
            for i in range(n_models):
                name = rs._name(i)

                def grant(gtype: str, grantee: str, level: str, name: str = name) -> None:
                    rows.append(
                        {
                            "resource_type": "model",
                            "model_id": ids[name],
                            "grantee_type": gtype,
                            "grantee": grantee,
                            "permission": level,
                            "granted_by": "bench",
                            "granted_at": now,
                        }
                    )

                if i % 50 == 1:
                    grant("user", USER, "READ")
                    readable.add(name)
                elif i % 50 == 2:
                    grant("group", GROUP, "EDIT")
                    readable.add(name)
                if i % 4 == 3:
                    grant("user", "bob" if i % 8 == 3 else "carol", "EDIT")
                if i % 6 == 5:
                    grant("group", "team-b", "READ")
            for lo in range(0, len(rows), rs.CHUNK):
                s.execute(insert(ResourceGrant), rows[lo : lo + rs.CHUNK])
        with db.engine.connect() as c:
            c.execute(text("ANALYZE"))
            c.commit()
    finally:
        db.dispose()
    return Mix(token=token, admin_token=admin_token, readable=readable, grants=len(rows))


@contextmanager
def _server(workdir: Path, url: str, default: str) -> Iterator[str]:
    """``registry_search.server`` with the given default permission (read from the
    environment by the server process at start)."""
    home = workdir / default.lower()
    home.mkdir()
    old = os.environ.get("PODSTACK_DEFAULT_PERMISSION")
    os.environ["PODSTACK_DEFAULT_PERMISSION"] = default
    try:
        with rs.server(home, url) as base:
            yield base
    finally:
        if old is None:
            os.environ.pop("PODSTACK_DEFAULT_PERMISSION", None)
        else:
            os.environ["PODSTACK_DEFAULT_PERMISSION"] = old


def _queries(n_models: int, n: int) -> dict[str, list[dict[str, Any]]]:
    rnd = random.Random(7)
    every = rs._queries(n_models, rnd, n)
    return {
        "list": [{} for _ in range(n)],
        "name_text": every["name_text"],
        "label": every["label"],
        "stage": every["stage"],
        "sort_updated": every["sort_updated"],
    }


def _client(base: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def all_names(c: httpx.Client, params: dict[str, Any] | None = None) -> list[str]:
    """Every model name the search answers, page after page."""
    names: list[str] = []
    token: str | None = None
    while True:
        p: dict[str, Any] = {**(params or {}), "limit": 1000}
        if token:
            p["page_token"] = token
        r = c.get("/registered-models", params=p)
        r.raise_for_status()
        body = r.json()
        names += [m["name"] for m in body["items"]]
        token = body.get("next_page_token")
        if not token:
            return names


def _time_round(
    c: httpx.Client,
    queries: dict[str, list[dict[str, Any]]],
    check: set[str] | None,
    hits: dict[str, list[int]],
) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {}
    for kind, params_list in queries.items():
        for params in params_list:
            t = time.perf_counter()
            r = c.get("/registered-models", params={**params, "limit": 100})
            lat.setdefault(kind, []).append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            names = {m["name"] for m in r.json()["items"]}
            hits.setdefault(kind, []).append(len(names))
            if check is not None:
                leaked = names - check
                assert not leaked, f"unreadable models in a restricted search: {sorted(leaked)}"
    return lat


def _stats(lat: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(rs._pct(lat, 50), 2),
        "p95_ms": round(rs._pct(lat, 95), 2),
        "mean_ms": round(statistics.fmean(lat), 2),
        "n": len(lat),
    }


def run_backend(kind: str, n_models: int, n_searches: int) -> dict[str, Any] | None:
    workdir = Path(tempfile.mkdtemp(prefix=f"podstack-bench-perm-{kind}-"))
    try:
        with rs._database(kind, workdir) as url:
            if url is None:
                return None
            seeded = rs.seed(url, n_models, random.Random(42))
            mix = grant_mix(url, n_models)
            print(
                f"{kind}: seeded {seeded}, {mix.grants} grants, {USER} reads {len(mix.readable)}",
                file=sys.stderr,
                flush=True,
            )
            queries = _queries(n_models, n_searches)
            with ExitStack() as stack:
                manage = stack.enter_context(_server(workdir, url, "MANAGE"))
                none = stack.enter_context(_server(workdir, url, "NONE"))
                clients = {
                    "manage": stack.enter_context(_client(manage, mix.token)),
                    "restricted": stack.enter_context(_client(none, mix.token)),
                    "admin": stack.enter_context(_client(none, mix.admin_token)),
                }
                # Correctness first: exactly the readable models, and nothing else, whole.
                seen = all_names(clients["restricted"])
                assert len(seen) == len(set(seen)), "a model appeared twice across pages"
                assert set(seen) == mix.readable, "restricted listing != readable models"
                assert len(all_names(clients["manage"])) == n_models
                for c in clients.values():  # warm-up: connections, caches, the planner
                    for _ in range(10):
                        c.get("/registered-models", params={"limit": 100}).raise_for_status()
                lat: dict[str, dict[str, list[float]]] = {k: {} for k in clients}
                hits: dict[str, dict[str, list[int]]] = {k: {} for k in clients}
                rounds: list[dict[str, float]] = []
                for _ in range(ROUNDS):
                    medians = {}
                    for who, c in clients.items():
                        check = mix.readable if who == "restricted" else None
                        got = _time_round(c, queries, check, hits[who])
                        for q, values in got.items():
                            lat[who].setdefault(q, []).extend(values)
                        medians[who] = round(
                            statistics.median(v for vs in got.values() for v in vs), 2
                        )
                    rounds.append(medians)
            out: dict[str, Any] = {
                "seeded": seeded,
                "grants": mix.grants,
                "readable": len(mix.readable),
                "rounds_p50_ms": rounds,
            }
            for who, per_kind in lat.items():
                out[who] = {
                    q: {**_stats(v), "mean_hits": round(statistics.fmean(hits[who][q]), 1)}
                    for q, v in per_kind.items()
                }
                out[who]["all"] = _stats([v for vs in per_kind.values() for v in vs])
            return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _lines(summary: dict[str, Any]) -> list[str]:
    n = summary["models"]
    lines = [
        f"{n:,} models; one editor reads {summary.get('readable', '?')} of them (1 in 50 "
        "owned, 1 in 50 granted to her, 1 in 50 to her group; other users' and groups' grants "
        f"on about 1 in 3 more); {summary['searches_per_kind']} searches per kind per round, "
        f"{ROUNDS} rounds interleaved, page size 100, over HTTP to one server process per "
        f"default permission; {summary['started']}, {summary['machine']['cpus']} cores.",
        "",
        "(a) `manage`: the editor, default MANAGE (today's behaviour, no filter); "
        "(b) `restricted`: the same editor, default NONE (narrowed to what she reads); "
        "(c) `admin`: default NONE, admin (bypass). Every restricted answer was checked to "
        "hold only readable models, and paging through the whole list returned exactly them.",
        "",
        "| db | search | (a) p50 / p95 ms | (b) p50 / p95 ms | (c) p50 / p95 ms | (b)/(a) p50 "
        "| models per page (a) / (b) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for db in ("sqlite", "postgresql"):
        res = summary.get(db)
        if not isinstance(res, dict) or "manage" not in res:
            lines.append(f"| {db} | skipped | | | | |")
            continue
        for q in (*KINDS, "all"):
            a, b, c = res["manage"][q], res["restricted"][q], res["admin"][q]
            ratio = b["p50_ms"] / a["p50_ms"] if a["p50_ms"] else float("nan")
            per_page = f"{a['mean_hits']} / {b['mean_hits']}" if "mean_hits" in a else "all kinds"
            lines.append(
                f"| {db} | {q} | {a['p50_ms']} / {a['p95_ms']} | {b['p50_ms']} / "
                f"{b['p95_ms']} | {c['p50_ms']} / {c['p95_ms']} | {ratio:.2f}x | {per_page} |"
            )
    lines += [
        "",
        "A restricted page holds fewer models when the filter matches few of hers (text, "
        "label), so it can be faster than (a); the plain list, stage and order pages are full "
        "in both and show the filter's own cost.",
        "",
        "How it got there (same data, same machine, shared with other work): a 2,000-model "
        "quick run had (b) at 1.90x (a) overall, and SQLite's plan (EXPLAIN QUERY PLAN) "
        "scanned every model for `created_by = ? OR id IN (grants)` and built an automatic "
        "index over all grants on every query; the readable set became a UNION of index "
        "ranges (new indexes on `created_by`, migration 0024; `ix_resource_grants_grantee` "
        "per grantee type). The first 10,000-model run with that still had (b) at 2.24x (a) "
        "overall on SQLite and 2.04x on PostgreSQL (list 2.22x / 2.75x, stage 3.06x / 2.15x, "
        "sort by update 3.17x / 2.22x) while the queries themselves took 1-2 ms: cProfile "
        "showed the rest in Python, building the readable-set statements and some 40 loader "
        "criteria per request and walking them for the cache key of Core statements they "
        "never apply to. They are now built once per user and kept off Core statements.",
    ]
    lines += ["", "Median of all searches per round (a / b / c ms):", ""]
    for db in ("sqlite", "postgresql"):
        res = summary.get(db)
        if isinstance(res, dict) and "rounds_p50_ms" in res:
            per = "; ".join(
                f"{r['manage']} / {r['restricted']} / {r['admin']}" for r in res["rounds_p50_ms"]
            )
            lines.append(f"- {db}: {per}")
    return lines


def main(args: Any = None) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False)) or os.environ.get("BENCH_QUICK") == "1"
    n_models = int(os.environ.get("PODSTACK_BENCH_MODELS", 2000 if quick else 10_000))
    n_searches = 10 if quick else 30
    summary: dict[str, Any] = {
        "models": n_models,
        "searches_per_kind": n_searches,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    timings: dict[str, float] = {}
    summary["timings"] = timings
    backends = os.environ.get("BENCH_BACKENDS", "sqlite,postgresql").split(",")
    for kind in backends:
        t0 = time.perf_counter()
        res = run_backend(kind, n_models, n_searches)
        summary[kind] = res if res is not None else {"skipped": "PostgreSQL unavailable"}
        if res is not None:
            summary["readable"] = res["readable"]
            timings[f"{kind} ({n_models:,} models)"] = round(time.perf_counter() - t0, 1)
            for q in (*KINDS, "all"):
                a, b = res["manage"][q]["p50_ms"], res["restricted"][q]["p50_ms"]
                print(
                    f"{kind:10s} {q:13s} p50 (a) {a:7.2f}  (b) {b:7.2f}  (c) "
                    f"{res['admin'][q]['p50_ms']:7.2f} ms  (b)/(a) {b / a:.2f}x",
                    file=sys.stderr,
                    flush=True,
                )
    rs.RESULTS.mkdir(exist_ok=True)
    (rs.RESULTS / "permissions_search-latest.json").write_text(json.dumps(summary, indent=2))
    if not quick:
        sections.record(
            "permissions-search",
            "Model search under permissions at 10,000 models (`benchmarks/permissions_search.py`)",
            _lines(summary),
        )
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, default=str))
