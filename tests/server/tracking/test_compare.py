"""Run comparison and the runs table's extras (tracking.compare): histories side by side,
differences, SQL thinning, group-by aggregates, chosen-column sorting with keyset pages, and
every bad input (too few/many runs, unknown ids, bad columns, bad group-by, bad filter), over
the service and over HTTP. Runs on both databases: the aggregation and window queries are SQL."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import httpx
import pytest

from podstack.errors import NotFound, ValidationFailed
from podstack.schemas import tracking as sch
from podstack.server.db.session import Database
from podstack.server.tracking import compare
from podstack.server.tracking import service as tracking
from tests.conftest import ADMIN_TOKEN, LiveServer

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
RUNS = [
    # name, params, tags, final accuracy
    ("a", {"optimizer": "adam", "lr": "0.01"}, {"team": "nlp"}, 0.70),
    ("b", {"optimizer": "adam", "lr": "0.001"}, {"team": "nlp"}, 0.90),
    ("c", {"optimizer": "sgd", "lr": "0.01"}, {"team": "cv"}, 0.60),
    ("d", {"lr": "0.1"}, {}, 0.50),
]


def _seed(db: Database, exp: str = "cmp-exp") -> list[str]:
    ids = []
    with db.session() as s:
        for name, params, tags, final in RUNS:
            run = tracking.create_run(
                s, "admin", sch.RunCreate(experiment_id=exp, run_name=name, tags=tags)
            )
            tracking.log_params(s, "admin", run.id, params)
            points = [
                {"key": "accuracy", "value": final * (step + 1) / 5, "step": step}
                for step in range(5)
            ] + [{"key": "loss", "value": 1.0 / (step + 1), "step": step} for step in range(5)]
            tracking.log_metrics(s, "admin", run.id, sch.LogMetrics(points=points))
            ids.append(run.id)
    return ids


def test_compare_runs_histories_and_differences(db: Database) -> None:
    ids = _seed(db)
    with db.session(readonly=True) as s:
        cmp = compare.compare_runs(s, [f"{ids[2]},{ids[0]}", ids[1]])
    assert [r.id for r in cmp.runs] == [ids[2], ids[0], ids[1]]  # the order asked for
    assert cmp.metric_keys == ["accuracy", "loss"]
    acc = cmp.histories["accuracy"]
    assert [s.run_id for s in acc] == [ids[2], ids[0], ids[1]]  # one series per run, in order
    assert acc[1].steps == [0, 1, 2, 3, 4]
    assert acc[1].values[-1] == pytest.approx(0.70)
    assert acc[0].seconds[0] == 0 and len(acc[0].times) == 5
    assert cmp.param_keys == ["lr", "optimizer"]
    assert cmp.differing["params"] == {"lr", "optimizer"}
    assert cmp.differing["metrics"] == {"accuracy"}  # loss ends at 0.2 in every run
    assert cmp.differing["tags"] == {"team"}
    assert cmp.experiments == {cmp.runs[0].experiment_id: "cmp-exp"}


def test_long_histories_are_thinned_in_sql_keeping_the_last_point(db: Database) -> None:
    ids = _seed(db)
    with db.session() as s:
        points = [{"key": "long", "value": float(i), "step": i} for i in range(3000)]
        tracking.log_metrics(s, "admin", ids[0], sch.LogMetrics(points=points))
    with db.session(readonly=True) as s:
        cmp = compare.compare_runs(s, ids[:2], max_points=100)
    (series,) = cmp.histories["long"]
    assert 95 <= len(series.steps) <= 101
    assert series.steps[-1] == 2999 and series.steps == sorted(series.steps)
    gaps = {b - a for a, b in zip(series.steps, series.steps[1:], strict=False)}
    assert max(gaps) <= 31  # evenly spread, not the first 100


def test_group_by_param_and_tag_aggregates_in_sql(db: Database) -> None:
    _seed(db)
    with db.session(readonly=True) as s:
        groups = compare.group_runs(
            s,
            experiment_ids=["cmp-exp"],
            filter_text=None,
            status=None,
            group_by="param:optimizer",
            metric_keys=["accuracy", "loss"],
        )
        by = {g.value: g for g in groups}
        assert [g.value for g in groups][-1] is None  # runs without the param come last
        assert by["adam"].runs == 2 and by["sgd"].runs == 1 and by[None].runs == 1
        adam = by["adam"].metrics["accuracy"]
        assert adam.mean == pytest.approx(0.80) and adam.min == pytest.approx(0.70)
        assert adam.max == pytest.approx(0.90) and adam.count == 2
        filtered = compare.group_runs(
            s,
            experiment_ids=["cmp-exp"],
            filter_text="metrics.accuracy >= 0.65",
            status=None,
            group_by="tag:team",
            metric_keys=["accuracy"],
        )
    assert {g.value: g.runs for g in filtered} == {"nlp": 2}


@pytest.mark.parametrize(
    ("kind", "key", "desc", "expected"),
    [
        ("metric_max", "accuracy", True, ["b", "a", "c", "d"]),
        ("metric_min", "accuracy", False, ["d", "c", "a", "b"]),
        ("tag", "team", False, ["c", "a", "b", "d"]),  # no tag: last; ties by id
        ("param", "lr", False, ["b", "a|c", "d"]),  # a and c tie on lr: by id
    ],
)
def test_runs_page_sorts_by_any_column_with_keyset_pages(
    db: Database, kind: str, key: str, desc: bool, expected: list[str]
) -> None:
    ids = _seed(db)
    names = dict(zip(ids, "abcd", strict=True))
    cols = compare.parse_columns(["metric_max:accuracy", "metric_min:loss", "tag:team"])
    seen: list[str] = []
    token = None
    with db.session(readonly=True) as s:
        for _ in range(3):
            page = compare.runs_page(
                s,
                experiment_ids=["cmp-exp"],
                filter_text=None,
                status=None,
                sort_kind=kind,
                sort_key=key,
                desc=desc,
                columns=cols,
                limit=3,
                page_token=token,
            )
            seen += [names[r.id] for r in page.runs]
            for r in page.runs:
                cells = page.cells[r.id]
                assert cells["metric_max:accuracy"] == pytest.approx(
                    dict((n, f) for n, _, _, f in RUNS)[names[r.id]]
                )
                assert cells["metric_min:loss"] == pytest.approx(0.2)
            token = page.next_token
            if token is None:
                break
    by_id = [n for e in expected for n in sorted(e.split("|"), key=lambda n: ids["abcd".index(n)])]
    if kind == "tag":  # a and b share the tag value: their order is by id.
        ab = sorted(["a", "b"], key=lambda n: ids["abcd".index(n)])
        by_id = ["c", *ab, "d"]
    assert seen == by_id


def test_min_and_max_cover_every_request_not_only_the_latest_point(db: Database) -> None:
    """The extremes are kept as points arrive: a peak in an early request, an older step sent
    after a newer one, and NaN points (skipped) all count, and the latest value stays the
    highest step's."""
    with db.session() as s:
        peak = tracking.create_run(s, "admin", sch.RunCreate(experiment_id="mm", run_name="p"))
        flat = tracking.create_run(s, "admin", sch.RunCreate(experiment_id="mm", run_name="f"))
        batches = [
            [(0, 0.5), (1, 0.95), (2, 0.6)],  # the peak, in the first request
            [(5, 0.7), (3, float("nan"))],
            [(4, 0.1)],  # an older step, sent last: the new minimum, not the latest value
        ]
        for batch in batches:
            points = [{"key": "acc", "value": v, "step": st} for st, v in batch]
            tracking.log_metrics(s, "admin", peak.id, sch.LogMetrics(points=points))
        for step in range(3):
            tracking.log_metrics(
                s, "admin", flat.id, sch.LogMetrics(metrics={"acc": 0.8}, step=step)
            )
        tracking.log_metrics(
            s, "admin", flat.id, sch.LogMetrics(metrics={"acc": float("nan")}, step=9)
        )
    cols = compare.parse_columns(["metric_min:acc", "metric_max:acc", "metric:acc"])
    with db.session(readonly=True) as s:
        for kind, desc, order in (
            ("metric_max", True, ["p", "f"]),
            ("metric_min", False, ["p", "f"]),
        ):
            page = compare.runs_page(
                s,
                experiment_ids=["mm"],
                filter_text=None,
                status=None,
                sort_kind=kind,
                sort_key="acc",
                desc=desc,
                columns=cols,
                limit=10,
                page_token=None,
            )
            assert [r.name for r in page.runs] == order
        cells = page.cells
    assert cells[peak.id]["metric_min:acc"] == pytest.approx(0.1)
    assert cells[peak.id]["metric_max:acc"] == pytest.approx(0.95)
    assert cells[peak.id]["metric:acc"] == pytest.approx(0.7)  # step 5 stays the latest
    assert cells[flat.id]["metric_min:acc"] == pytest.approx(0.8)
    assert cells[flat.id]["metric_max:acc"] == pytest.approx(0.8)  # the NaN at step 9 is skipped


def test_bad_inputs_are_refused_with_reasons(db: Database) -> None:
    ids = _seed(db)
    with db.session(readonly=True) as s:
        with pytest.raises(ValidationFailed, match="at least 2 runs"):
            compare.compare_runs(s, [ids[0]])
        with pytest.raises(ValidationFailed, match="At most 20 runs"):
            compare.compare_runs(s, [",".join(f"run-{i:04x}" for i in range(21))])
        with pytest.raises(NotFound, match="run-nope") as exc:
            compare.compare_runs(s, [ids[0], "run-nope", "run-gone"])
        assert exc.value.details["runs"] == ["run-nope", "run-gone"]
        with pytest.raises(ValidationFailed, match="Unknown column"):
            compare.parse_columns(["metric_avg:accuracy"])
        with pytest.raises(ValidationFailed, match="At most 30 columns"):
            compare.parse_columns([f"param:p{i}" for i in range(31)])
        with pytest.raises(ValidationFailed, match="Cannot group by"):
            compare.parse_group("metric:accuracy")
        with pytest.raises(ValidationFailed, match="Invalid filter"):
            compare.group_runs(
                s,
                experiment_ids=["cmp-exp"],
                filter_text="metrics.accuracy >>> 1",
                status=None,
                group_by="param:lr",
                metric_keys=[],
            )


# ---------------------------------------------------------------- over HTTP (the UI pages)


@pytest.fixture
def web(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    c = httpx.Client(base_url=live_server.url, follow_redirects=False, timeout=60)
    token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"password": ADMIN_TOKEN, "csrf_token": token}).status_code == 303
    yield c
    c.close()


def test_compare_page_shows_every_run_and_refuses_bad_selections(
    web: httpx.Client, db: Database
) -> None:
    ids = _seed(db)
    r = web.get("/runs/compare", params={"runs": ",".join(ids[:3])})
    assert r.status_code == 200
    for rid in ids[:3]:
        assert f'data-legend-run="{rid}"' in r.text
        assert f'<polyline class="line" data-run="{rid}"' in r.text  # parallel coordinates
        assert f'<circle data-run="{rid}"' in r.text  # scatter
    assert r.text.count('data-metric-chart="') == 2
    assert 'data-param-row="optimizer"' in r.text and "diff-row" in r.text
    # Repeated parameters (the no-JavaScript form) work as well as a comma list.
    assert web.get("/runs/compare", params=[("runs", ids[0]), ("runs", ids[1])]).status_code == 200
    one = web.get("/runs/compare", params={"runs": ids[0]})
    assert one.status_code == 422 and "Select at least 2 runs" in one.text
    many = web.get(
        "/runs/compare", params={"runs": ",".join([*ids, *(f"run-{i}" for i in range(17))])}
    )
    assert many.status_code == 422 and "At most 20 runs" in many.text
    unknown = web.get("/runs/compare", params={"runs": f"{ids[0]},run-unknown"})
    assert unknown.status_code == 404 and "run-unknown" in unknown.text


def test_compare_page_links_the_versions_the_runs_produced(
    web: httpx.Client, api: httpx.Client, db: Database
) -> None:
    ids = _seed(db)
    assert (
        web.get("/runs/compare", params={"runs": ",".join(ids[:2])}).text.count("data-version-link")
        == 0
    )
    for rid in ids[:2]:
        assert api.put(f"/runs/{rid}/artifacts/model.bin", content=rid.encode()).status_code == 201
        r = api.post(
            "/registered-models/cmp-model/versions",
            json={"source_run_id": rid, "artifact_path": "model.bin"},
        )
        assert r.status_code == 201, r.text
    page = web.get("/runs/compare", params={"runs": ",".join(ids[:3])}).text
    links = re.findall(r'<a href="([^"]+)" data-version-link>([^<]+)</a>', page)
    assert links == [("/models/cmp-model/compare?v=1&amp;v=2", "cmp-model v1, v2 — compare")]


def test_runs_table_columns_group_by_and_inline_errors(web: httpx.Client, db: Database) -> None:
    _seed(db)
    base = "/experiments/cmp-exp"
    page = web.get(base, params={"choose": "1", "col": ["metric_max:accuracy", "tag:team"]})
    assert page.status_code == 200
    assert 'data-column="metric_max:accuracy"' in page.text
    assert 'data-column="tag:team"' in page.text
    cookie = page.headers["set-cookie"]
    assert "=metric_max:accuracy,tag:team; Path=/experiments;" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Remembered for the next visit (the client sends the cookie back).
    again = web.get(base)
    assert 'data-column="tag:team"' in again.text
    # A bad column: an inline error, the remembered choice unchanged (no new cookie).
    bad = web.get(base, params={"choose": "1", "col": "metric_avg:accuracy"})
    assert bad.status_code == 200 and "Unknown column" in bad.text
    assert "set-cookie" not in bad.headers
    grouped = web.get(base, params={"group": "param:optimizer"})
    assert 'data-group="adam"' in grouped.text and 'data-agg="accuracy:mean"' in grouped.text
    bad_group = web.get(base, params={"group": "metric:accuracy"})
    assert "Cannot group by" in bad_group.text and 'role="alert"' in bad_group.text
    for bad in ("foo:bar", "param", "tag:"):
        r = web.get(base, params={"group": bad})
        assert r.status_code == 200 and "Cannot group by" in r.text
    bad_filter = web.get(base, params={"filter": "metrics.accuracy >>> 1"})
    assert "Invalid filter" in bad_filter.text and 'aria-invalid="true"' in bad_filter.text


def test_nan_final_metrics_are_shown_not_crashing(db: Database) -> None:
    ids = _seed(db)
    with db.session() as s:
        tracking.log_metrics(
            s, "admin", ids[0], sch.LogMetrics(metrics={"accuracy": math.nan}, step=10)
        )
    with db.session(readonly=True) as s:
        cmp = compare.compare_runs(s, ids[:2])
    assert cmp.histories["accuracy"][0].values[-1] is None


def test_run_page_charts_system_metrics_in_their_own_section(
    web: httpx.Client, db: Database
) -> None:
    ids = _seed(db)
    with db.session() as s:
        tracking.log_metrics(
            s,
            "admin",
            ids[0],
            sch.LogMetrics(
                points=[
                    {"key": "system/cpu_utilization_percentage", "value": 10.0 * i, "step": i}
                    for i in range(3)
                ]
            ),
        )
    page = web.get(f"/runs/{ids[0]}", params={"tab": "metrics"}).text
    assert page.index('data-chart="chart-1"') < page.index("data-system-metrics")
    assert 'data-system-chart="system/cpu_utilization_percentage"' in page


def test_image_route_and_previews_refuse_bad_paths(web: httpx.Client, db: Database) -> None:
    ids = _seed(db)
    # Not an image: 422 saying what is previewable; nothing served.
    r = web.get(f"/runs/{ids[0]}/image/notes.txt")
    assert r.status_code == 422 and "is not an image" in r.text
    # An image path the run does not have: 404 naming what exists.
    r = web.get(f"/runs/{ids[0]}/image/plot.png")
    assert r.status_code == 404 and "has no artifact" in r.text
    r = web.get(f"/runs/{ids[0]}", params={"tab": "artifacts", "preview": "missing.json"})
    assert r.status_code == 404 and "missing.json" in r.text
    r = web.get(f"/runs/{ids[0]}/image/..%2Fetc%2Fpasswd.png")
    assert r.status_code in (400, 404, 422)
