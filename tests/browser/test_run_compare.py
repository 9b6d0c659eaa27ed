"""Run comparison in Chromium (issue 20): select runs in the runs table (the selection survives
filtering and reloads), Compare, one chart per metric with one line per run (asserted on the
chart's rendered data), smoothing / log scale / time axis, the differences toggle, parallel
coordinates and scatter plots, the column chooser (remembered), group by, and the refusals."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import seed_run

CHART_DATA = """canvas => {
  const c = window.Chart.getChart(canvas);
  return {
    type: c.options.scales.y.type,
    lines: c.data.datasets.map(d => ({
      label: d.label, color: d.borderColor, points: d.data.length,
      ys: d.data.map(p => p.y), xs: d.data.map(p => p.x),
    })),
  };
}"""


def _runs(sdk: Any, tmp_path: Path) -> list[str]:
    return [
        seed_run(sdk, tmp_path, name="low", params={"lr": 0.1, "optimizer": "adam"}, final=0.5),
        seed_run(sdk, tmp_path, name="high", params={"lr": 0.001, "optimizer": "adam"}, final=1.0),
        seed_run(sdk, tmp_path, name="mid", params={"lr": 0.01, "optimizer": "adam"}, final=0.8),
    ]


def test_select_filter_compare_and_chart_controls(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    ids = _runs(sdk, tmp_path)
    page = as_admin
    page.goto("/experiments/sentiment-exp")
    compare = page.locator("[data-compare-button]")
    expect(compare).to_be_disabled()
    page.get_by_label("Select low").check()
    page.get_by_label("Select high").check()
    expect(page.locator("[data-selected-count]")).to_have_text("2")
    expect(compare).to_be_enabled()
    # Filtering hides a selected run: it stays selected.
    page.get_by_label("Filter runs").fill("metrics.accuracy >= 0.7")
    page.get_by_label("Filter runs").press("Enter")
    expect(page.locator("[data-runs-table] tbody tr")).to_have_count(2)
    expect(page.locator("[data-selected-elsewhere]")).to_contain_text("1 not on this page")
    page.get_by_label("Select mid").check()
    page.reload()  # and a reload
    expect(page.locator("[data-selected-count]")).to_have_text("3")
    expect(page.get_by_label("Select mid")).to_be_checked()
    compare.click()
    expect(page).to_have_url(re.compile(r"/runs/compare\?runs=" + ",".join(ids[:2] + ids[2:])))
    expect(page.locator("[data-legend-run]")).to_have_count(3)
    canvases = page.locator("canvas[data-run-chart][data-lines]")
    expect(canvases).to_have_count(2)  # accuracy and loss
    charts = [c.evaluate(CHART_DATA) for c in canvases.all()]
    for chart in charts:
        assert [line["label"] for line in chart["lines"]] == ["low", "high", "mid"]
        assert all(line["points"] == 5 for line in chart["lines"])
        assert chart["type"] == "linear"
    # A run keeps its colour on every chart, and the colours differ between runs.
    assert [ln["color"] for ln in charts[0]["lines"]] == [ln["color"] for ln in charts[1]["lines"]]
    assert len({ln["color"] for ln in charts[0]["lines"]}) == 3
    accuracy = next(c for c in charts if c["lines"][1]["ys"][-1] > 0.9)
    assert accuracy["lines"][1]["ys"] == [1.0 * (0.6 + 0.1 * s) for s in range(5)]
    # Log scale, time axis and smoothing change what is drawn.
    first = canvases.first
    page.get_by_label("Log scale").check()
    expect(first).to_have_attribute("data-y-scale", "log")
    assert first.evaluate(CHART_DATA)["type"] == "logarithmic"
    page.get_by_label("X axis").select_option("relative")
    expect(first).to_have_attribute("data-x-axis", "relative")
    xs = first.evaluate(CHART_DATA)["lines"][0]["xs"]
    assert xs[0] == 0 and xs != [0, 1, 2, 3, 4]
    page.get_by_label("X axis").select_option("step")
    before = first.evaluate(CHART_DATA)["lines"][0]["ys"]
    page.get_by_label("Smoothing").fill("0.8")
    after = first.evaluate(CHART_DATA)["lines"][0]["ys"]
    assert after[0] == before[0] and after[-1] != before[-1]
    # Both plots draw one mark per run; every chart has a data table without JavaScript.
    for rid in ids:
        expect(page.locator(f'[data-parallel] polyline[data-run="{rid}"]')).to_have_count(1)
        expect(page.locator(f'[data-scatter] circle[data-run="{rid}"]')).to_have_count(1)
    expect(page.locator("[data-chart-table]")).to_have_count(2)


def test_differences_toggle_and_plot_choices(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    ids = _runs(sdk, tmp_path)
    page = as_admin
    page.goto("/runs/compare?runs=" + ",".join(ids))
    same = page.locator('tr[data-param-row="optimizer"]')
    differs = page.locator('tr[data-param-row="lr"]')
    expect(same).to_be_visible()
    expect(differs.locator("td.diff")).to_have_count(3)
    page.get_by_label("Show only differences").check()
    expect(same).to_be_hidden()
    expect(differs).to_be_visible()
    expect(page).to_have_url(re.compile(r"diff=1"))
    page.reload()  # the shared address keeps the view
    expect(same).to_be_hidden()
    expect(page.locator("tr[data-datasets-row] td").nth(1)).to_contain_text("reviews-v2")
    # Scatter: loss against accuracy, chosen from the form.
    page.locator("select[name=sx]").select_option("metric:loss")
    page.locator("select[name=sy]").select_option("metric:accuracy")
    page.locator("select[name=sy]").locator("xpath=ancestor::form").get_by_role("button").click()
    expect(page).to_have_url(re.compile(r"sx=metric%3Aloss"))
    expect(page.locator("[data-scatter] circle")).to_have_count(3)
    expect(page.locator("[data-scatter]")).to_contain_text("metric loss")
    # Register from the comparison: each run links to its artifacts and the Register flow.
    page.locator("tr[data-register-row] a").first.click()
    expect(page).to_have_url(re.compile(rf"/runs/{ids[0]}\?tab=artifacts"))
    expect(page.get_by_role("button", name="Register to Model Registry")).to_be_visible()


def test_column_chooser_is_remembered_and_sortable(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    _runs(sdk, tmp_path)
    page = as_admin
    page.goto("/experiments/sentiment-exp")
    page.locator("[data-column-chooser] summary").click()
    page.get_by_label("loss (max)").check()
    page.locator("[data-column-chooser] input[value='tag:team']").check()
    page.get_by_role("button", name="Show columns").click()
    head = page.locator("[data-runs-table] thead")
    expect(head.locator('th[data-column="metric_max:loss"]')).to_have_count(1)
    expect(head.locator('th[data-column="tag:team"]')).to_have_count(1)
    expect(head.locator('th[data-column="param:lr"]')).to_have_count(0)  # not chosen
    # Sort by the chosen column; the choice is kept on a fresh visit (cookie per experiment).
    head.get_by_role("link", name="loss (max)").click()
    expect(page).to_have_url(re.compile(r"sort=metric_max%3Aloss"))
    page.goto("/experiments/sentiment-exp")
    expect(page.locator('th[data-column="tag:team"]')).to_have_count(1)
    page.locator("[data-column-chooser] summary").click()
    page.get_by_role("link", name="Default columns").click()
    expect(page.locator('th[data-column="param:lr"]')).to_have_count(1)


def test_group_by_and_refusals(as_admin: Any, sdk: Any, tmp_path: Path) -> None:
    ids = _runs(sdk, tmp_path)
    seed_run(sdk, tmp_path, name="sgd", params={"lr": 0.1, "optimizer": "sgd"}, final=0.4)
    page = as_admin
    page.goto("/experiments/sentiment-exp")
    page.get_by_label("Group by").select_option("param:optimizer")
    table = page.locator("[data-group-table]")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator('tr[data-group="adam"] [data-count]')).to_have_text("3")
    expect(table.locator('tr[data-group="sgd"] [data-count]')).to_have_text("1")
    expect(table.locator('tr[data-group="adam"] [data-agg="accuracy:max"]')).to_have_text("1")
    # A group opens its runs (the filter language).
    table.get_by_role("link", name="sgd").click()
    expect(page.get_by_label("Filter runs")).to_have_value("params.`optimizer` = 'sgd'")
    # Too many runs, or one: a page saying why.
    page.goto("/runs/compare?runs=" + ids[0])
    expect(page.locator("main")).to_contain_text("Select at least 2 runs")
    page.goto("/runs/compare?runs=" + ",".join(f"run-{i:02d}" for i in range(21)))
    expect(page.locator("main")).to_contain_text("At most 20 runs")


# ---------------------------------------------------------------- artifact previews


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG, built with zlib (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png(2, 1)
EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="window.__pwned=2">'
    '<script>window.__pwned = 1; alert("svg script ran")</script>'
    '<rect width="40" height="20" fill="teal"/></svg>'
)
MLMODEL = """artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    python_version: 3.11.7
  sklearn:
    sklearn_version: 1.5.0
run_id: abc123
signature:
  inputs: '[{"type": "double", "name": "sepal_length"}, {"type": "double", "name": "petal_width"}]'
  outputs: '[{"type": "long", "name": "class"}]'
utc_time_created: '2026-01-01 10:00:00'
"""


def _artifact_run(sdk: Any, tmp_path: Path) -> str:
    root = tmp_path / "preview-files"
    (root / "model").mkdir(parents=True)
    (root / "plot.png").write_bytes(PNG)
    (root / "evil.svg").write_text(EVIL_SVG)
    # Over 1 MiB: only the head is shown.
    (root / "train.log").write_text(
        "".join(f"epoch {i} loss {1 / (i + 1):.4f}\n" for i in range(60_000))
    )
    (root / "metrics.json").write_text('{"accuracy":0.93,"classes":["neg","pos"]}')
    (root / "sample.csv").write_text(
        "text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(250))
    )
    (root / "model" / "MLmodel").write_text(MLMODEL)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 4)
    with sdk.start_run(experiment_id="preview-exp", run_name="previews") as run:
        run.log_artifacts(str(root))
        return run.id


def test_artifact_previews_of_each_kind(
    as_admin: Any, sdk: Any, tmp_path: Path, browser: Any, context: Any
) -> None:
    rid = _artifact_run(sdk, tmp_path)
    page = as_admin

    def open_preview(path: str) -> Any:
        page.goto(f"/runs/{rid}?tab=artifacts&path={path.rsplit('/', 1)[0] if '/' in path else ''}")
        page.locator(f'tr[data-artifact="{path}"]').get_by_role("link", name="Preview").click()
        return page.locator("[data-preview]")

    pv = open_preview("plot.png")
    expect(pv).to_have_attribute("data-preview", "image")
    img = pv.locator("img[data-preview-image]")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 2", arg=img.element_handle()
    )
    # SVG: drawn as an image, its script never runs, and it is served sandboxed.
    pv = open_preview("evil.svg")
    svg = pv.locator("img[data-preview-image]")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 40", arg=svg.element_handle()
    )
    assert page.evaluate("window.__pwned") is None
    src = svg.get_attribute("src")
    assert src is not None
    resp = page.request.get(src)
    assert resp.headers["content-type"] == "image/svg+xml"
    assert "sandbox" in resp.headers["content-security-policy"]
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    # Opened directly (a new tab, same session): the document is sandboxed, nothing runs.
    # A separate context: Chromium reports the blocked script as a console error, which is
    # the point here, not a page problem.
    direct = browser.new_context(
        base_url=page.url.split("/runs/")[0], storage_state=context.storage_state()
    )
    try:
        other = direct.new_page()
        dialogs: list[str] = []
        other.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        other.goto(src)
        other.wait_for_timeout(200)
        assert other.evaluate("window.__pwned") is None and dialogs == []
    finally:
        direct.close()
    # Text and logs: the first 1 MiB with a note and a download link.
    pv = open_preview("train.log")
    expect(pv).to_have_attribute("data-preview", "text")
    expect(pv.locator("[data-preview-truncated]")).to_contain_text("first 1 MiB")
    expect(pv.locator("[data-preview-text]")).to_contain_text("epoch 0 loss 1.0000")
    assert len(pv.locator("[data-preview-text]").inner_text()) <= 1024 * 1024
    expect(pv.get_by_role("link", name="Download")).to_have_attribute(
        "href", re.compile("train.log")
    )
    # JSON, pretty-printed.
    pv = open_preview("metrics.json")
    expect(pv.locator("[data-preview-text]")).to_contain_text('"accuracy": 0.93,\n  "classes": [')
    # CSV: a table of the first 100 rows.
    pv = open_preview("sample.csv")
    table = pv.locator("[data-preview-table]")
    expect(table.locator("thead th")).to_have_text(["text", "label"])
    expect(table.locator("tbody tr")).to_have_count(100)
    # MLmodel: flavors and signature.
    pv = open_preview("model/MLmodel")
    expect(pv.locator("[data-flavors]")).to_contain_text("python_function")
    expect(pv.locator("[data-flavors]")).to_contain_text("sklearn_version=1.5.0")
    expect(pv.locator("[data-signature]")).to_contain_text("sepal_length")
    expect(pv.locator("[data-signature]")).to_contain_text("long")
    # Binary: no preview, a download.
    pv = open_preview("weights.bin")
    expect(pv.locator("[data-preview-binary]")).to_be_visible()
