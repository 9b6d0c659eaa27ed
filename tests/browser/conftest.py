"""Browser tests: Debian's Chromium driven by Playwright for Python against ``live_server``.

One browser per pytest worker, a fresh context (cookies, storage) per test. Every test fails
if a page logs a console error, throws an uncaught exception, or gets a 5xx (or a 4xx for a
static file); expected refusals (403/409/422 answers the test itself provokes) are asserted
by the tests and not counted as console errors. On failure a screenshot of each open page is
saved to ``test-artifacts/``.

Without Chromium the tests are skipped with a loud reason locally, and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from podstack import MLOpsClient
from podstack.server.auth import service as auth_service
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, IN_CI, LiveServer

CHROMIUM = os.environ.get("PODSTACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct-horse-battery"
# Chromium reports every 4xx/5xx load as a console error. 4xx answers to the app's own pages
# and htmx calls are refusals the tests provoke and assert; static files must never fail.
_LOAD_FAILED = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        message = (
            f"BROWSER TESTS NOT RUN: Chromium not found at {CHROMIUM} "
            "(install it: apt-get install chromium, or run scripts/ensure-test-deps.sh; "
            "set PODSTACK_CHROMIUM to use another binary)."
        )
        if IN_CI:
            pytest.fail(message + " CI=true requires the browser tests to run.", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    except Exception as exc:
        pw.stop()
        if IN_CI:
            raise
        pytest.skip(f"BROWSER TESTS NOT RUN: Chromium failed to start: {exc}")
    yield b
    b.close()
    pw.stop()


@dataclass
class PageProblems:
    errors: list[str] = field(default_factory=list)

    def console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        text = msg.text
        m = _LOAD_FAILED.search(text)
        url = (msg.location or {}).get("url", "")
        if m and 400 <= int(m.group(1)) < 500 and "/static/" not in url:
            return
        self.errors.append(f"console error: {text} ({url})")

    def page_error(self, exc: Any) -> None:
        self.errors.append(f"uncaught exception: {exc}")

    def response(self, resp: Any) -> None:
        if resp.status >= 500 or (resp.status >= 400 and "/static/" in resp.url):
            self.errors.append(f"HTTP {resp.status} for {resp.request.method} {resp.url}")


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-150:]


@pytest.fixture
def context(browser: Any, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    ctx = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 850})
    ctx.set_default_timeout(10_000)
    ctx.set_default_navigation_timeout(15_000)
    problems = PageProblems()

    def watch(page: Any) -> None:
        page.on("console", problems.console)
        page.on("pageerror", problems.page_error)
        page.on("response", problems.response)
        # No test expects a native alert/confirm: the UI uses <dialog>. One appearing (e.g.
        # injected markup executing) is recorded and dismissed.
        page.on(
            "dialog", lambda d: (problems.errors.append(f"native dialog: {d.message}"), d.dismiss())
        )

    ctx.on("page", watch)
    ctx.problems = problems
    yield ctx
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, page in enumerate(ctx.pages):
            try:
                page.screenshot(
                    path=str(ARTIFACTS / f"{_safe_name(request.node.nodeid)}-{i}.png"),
                    full_page=True,
                )
            except Exception:
                pass
    ctx.close()
    if problems.errors and not (failed is not None and failed.failed):
        pytest.fail("The page reported problems:\n" + "\n".join(problems.errors), pytrace=False)


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


# ---------------------------------------------------------------- people and data


@dataclass(frozen=True)
class Person:
    username: str
    role: str
    password: str = PASSWORD


@pytest.fixture
def make_user(db: Database) -> Callable[..., Person]:
    def make(role: str = "editor", username: str | None = None) -> Person:
        name = username or f"{role}-{uuid.uuid4().hex[:6]}"
        with db.session() as s:
            auth_service.create_user(s, "test", name, role=role, password=PASSWORD)
        return Person(name, role)

    return make


def login(
    page: Any, who: Person | None = None, *, token: str | None = None, next: str = ""
) -> None:
    """Signs in through the login form, as a person would."""
    page.goto("/login" + (f"?next={next}" if next else ""))
    if who is not None:
        page.get_by_label("Username").fill(who.username)
        page.get_by_label("Password or API token").fill(who.password)
    else:
        page.get_by_label("Password or API token").fill(token or ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("domcontentloaded")
    assert "/login" not in page.url, page.locator("[role=alert]").all_inner_texts()


@pytest.fixture
def as_admin(page: Any) -> Any:
    login(page)
    return page


@pytest.fixture
def sdk(
    live_server: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MLOpsClient]:
    """The SDK over HTTP as admin, for setting up data the way users create it."""
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    yield c
    c.close()


@dataclass
class Seeded:
    model: str
    runs: list[str]
    experiment: str


def seed_run(
    sdk: MLOpsClient,
    tmp_path: Path,
    *,
    experiment: str = "sentiment-exp",
    name: str = "bert-base",
    params: dict[str, Any] | None = None,
    final: float = 0.9,
    files: dict[str, str] | None = None,
) -> str:
    """A finished run with params, a metric curve, a dataset and artifacts."""
    with sdk.start_run(experiment_id=experiment, run_name=name, tags={"team": "nlp"}) as run:
        run.log_params(params or {"lr": 0.001, "epochs": 3, "optimizer": "adam"})
        sdk.log_metric_points(
            run.id,
            [
                {"key": k, "value": v, "step": step}
                for step in range(5)
                for k, v in (
                    ("accuracy", final * (0.6 + 0.1 * step)),
                    ("loss", 1.0 / (step + 1)),
                )
            ],
        )
        run.log_dataset(
            "reviews-v2",
            source_uri="s3://data/reviews.parquet",
            digest="abc123def456",
            context="training",
        )
        root = tmp_path / f"artifacts-{uuid.uuid4().hex[:6]}"
        for rel, text in (
            files
            or {
                "model.pt": "weights " * 50,
                "config.json": '{"layers": 12}',
                "tokenizer/vocab.txt": "a\nb\nc",
            }
        ).items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        run.log_artifacts(str(root))
        return run.id


@pytest.fixture
def seeded(sdk: MLOpsClient, tmp_path: Path) -> Seeded:
    """sentiment-classifier with v1 (Archived), v2 (Production), v3 (Staging), from three runs."""
    runs = [
        seed_run(sdk, tmp_path, name="run-a", params={"lr": 0.01, "epochs": 3}, final=0.8),
        seed_run(sdk, tmp_path, name="run-b", params={"lr": 0.001, "epochs": 3}, final=0.9),
        seed_run(sdk, tmp_path, name="run-c", params={"lr": 0.001, "epochs": 5}, final=0.95),
    ]
    name = "sentiment-classifier"
    sdk.register_model(
        name=name, description="BERT-based sentiment analysis model", tags=["nlp", "sentiment"]
    )
    for i, rid in enumerate(runs):
        sdk.create_model_version(name, rid, "", description=f"version from run {i + 1}")
    sdk.transition_model_version_stage(name, 1, "Production")
    sdk.transition_model_version_stage(name, 2, "Production", note="better", archive_existing=True)
    sdk.transition_model_version_stage(name, 3, "Staging", note="candidate")
    return Seeded(model=name, runs=runs, experiment="sentiment-exp")


def toast(page: Any) -> Any:
    """The most recent toast."""
    return page.locator("#toasts .toast").last


def settled(page: Any) -> None:
    """Waits until htmx has finished swapping and settling (new content gets its handlers
    only then: typing into a just-swapped form before that would be lost)."""
    busy = ".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added"
    page.wait_for_function(f"() => !document.querySelector('{busy}')")
