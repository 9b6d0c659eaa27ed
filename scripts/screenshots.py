"""Screenshots of the main UI pages, filled by ``podstack demo`` (``make screenshots``).

Runs the demo into a temporary home, starts ``podstack server`` on a free port, signs in with
Debian's Chromium through Playwright and saves PNGs to docs/screenshots/. ``--url``/``--token``
point it at a server that is already running (and already has data) instead.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("PODSTACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "pst_screenshots-admin-token-0123456789"

# (file name, path, what to wait for, optional action before the shot)
PAGES: list[tuple[str, str, str, str | None]] = [
    ("model-registry.png", "/models", "[data-models-table]", None),
    ("register-model-dialog.png", "/models", "[data-models-table]", "register"),
    ("model-details.png", "/models/sentiment-classifier", "[data-versions-table]", None),
    ("manage-aliases.png", "/models/sentiment-classifier", "[data-versions-table]", "aliases"),
    (
        "version-overview.png",
        "/models/sentiment-classifier/versions/3",
        "[data-version-details]",
        None,
    ),
    (
        "version-artifacts.png",
        "/models/sentiment-classifier/versions/3?tab=artifacts",
        "[data-files-table]",
        None,
    ),
    (
        "version-metrics.png",
        "/models/sentiment-classifier/versions/4?tab=metrics",
        "[data-metric-comparison]",
        None,
    ),
    (
        "version-lineage.png",
        "/models/sentiment-classifier-de/versions/1?tab=lineage",
        "[data-lineage][data-node-count]",
        None,
    ),
    (
        "change-stage-dialog.png",
        "/models/sentiment-classifier/versions/4",
        "[data-version-details]",
        "stage",
    ),
    (
        "compare-versions.png",
        "/models/sentiment-classifier/compare?v=2&v=3&v=4",
        "[data-metric-comparison]",
        None,
    ),
    ("experiments.png", "/experiments", "[data-experiments-table]", None),
    ("experiment-runs.png", "/experiments/sentiment-exp", "[data-runs-table]", None),
    ("run-metrics.png", "RUN?tab=metrics", "[data-charts]", None),
    # Issue 20: run selection, chosen columns, group by, the run comparison.
    ("runs-select-compare.png", "/experiments/sentiment-exp", "[data-runs-table]", "select-runs"),
    (
        "runs-columns-group.png",
        "/experiments/sentiment-exp?group=param:model",
        "[data-group-table]",
        None,
    ),
    ("compare-runs.png", "COMPARE", "canvas[data-run-chart][data-lines]", None),
    (
        "run-artifact-preview.png",
        "RUN?tab=artifacts&path=eval&preview=eval/confusion_matrix.json",
        "[data-preview]",
        None,
    ),
    ("run-artifacts.png", "RUN?tab=artifacts", "[data-artifacts]", "register-run"),
    ("api-tokens.png", "/settings/tokens", "[data-tokens-table]", None),
    ("login.png", "/login", "form", "logout"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _podstack(*args: str) -> list[str]:
    # The installed console script is not always on PATH (e.g. a venv that is not activated).
    return [sys.executable, "-c", "from podstack.cli.main import app; app()", *args]


def _start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "PODSTACK_HOME": str(home), "PODSTACK_PROGRESS": "0"}
    port = _free_port()
    env["PODSTACK_ADMIN_TOKEN"] = TOKEN
    proc = subprocess.Popen(
        _podstack("server", "--port", str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.terminate()
            sys.exit("the server did not start")
        time.sleep(0.2)
    # Through the server (not embedded) so the data is attributed to a person, as in real use.
    demo = subprocess.run(
        _podstack("demo", "--url", url, "--token", TOKEN), env=env, capture_output=True, text=True
    )
    if demo.returncode != 0:
        proc.terminate()
        sys.exit(f"podstack demo failed:\n{demo.stdout}\n{demo.stderr}")
    return proc, url


def _first_run(url: str, token: str) -> str:
    runs = httpx.post(
        url + "/api/v1/runs/search",
        json={"experiment_ids": ["sentiment-exp"], "order_by": "metrics.accuracy DESC", "limit": 1},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["items"]
    return f"/runs/{runs[0]['id']}"


def _compare_runs(url: str, token: str) -> str:
    """The compare view of the demo's four best sentiment runs."""
    runs = httpx.post(
        url + "/api/v1/runs/search",
        json={"experiment_ids": ["sentiment-exp"], "order_by": "metrics.accuracy DESC", "limit": 4},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["items"]
    return "/runs/compare?runs=" + ",".join(r["id"] for r in runs)


def shoot(url: str, token: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    run_page = _first_run(url, token)
    compare_page = _compare_runs(url, token)
    saved: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page = ctx.new_page()
        page.goto(url + "/login")
        page.fill("#f-password", token)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/models$"))
        for name, path, ready, action in PAGES:
            path = path.replace("RUN", run_page).replace("COMPARE", compare_page)
            if action == "logout":
                ctx.clear_cookies()
            page.goto(url + path)
            page.wait_for_selector(ready)
            page.wait_for_timeout(400)  # charts and the graph finish their first layout
            if action == "register":
                page.click("text=Register Model")
                page.fill("#f-name", "support-ticket-router")
                page.fill("#f-description", "Routes incoming tickets to the right team")
                page.fill("#f-labels", "nlp, routing")
            elif action == "aliases":
                page.click("text=Manage Aliases")
            elif action == "stage":
                page.click("text=Change Stage")
                page.check("input[name=stage][value=Production]")
                page.fill("#f-note", "A/B test: +0.8 points accuracy, latency within budget")
                page.check("input[name=archive_existing]")
            elif action == "select-runs":
                for box in page.locator("input[data-run-select]").all()[:3]:
                    box.check()
            elif action == "register-run":
                page.click("text=Register to Model Registry")
                page.select_option("#f-artifact_path", "model.pt")
                page.fill("#f-model_name", "sentiment-classifier")
            page.wait_for_timeout(200)
            target = out / name
            page.screenshot(path=str(target), full_page=action is None and "lineage" not in name)
            saved.append(target)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="Use this running server (it must hold demo data).")
    parser.add_argument("--token", default=TOKEN, help="Admin token for --url.")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.url:
        saved = shoot(args.url.rstrip("/"), args.token, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="podstack-screens-") as tmp:
            proc, url = _start_server(Path(tmp))
            try:
                saved = shoot(url, TOKEN, args.out)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    for p in saved:
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
