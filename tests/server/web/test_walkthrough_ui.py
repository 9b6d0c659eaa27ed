"""Registry pages, bugs a new user hit walking through the seed (issue 14): refusals shown in
their dialog, the signed-in 404 page, destructive actions that name what they affect, the
model list's filters and sort, and Change Stage saying what happens to other versions.

Plain HTTP against the live server: these are rendered-HTML checks a browser adds nothing to.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
HX = {"HX-Request": "true"}


@pytest.fixture
def web(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    c = httpx.Client(base_url=live_server.url, follow_redirects=False, timeout=60)
    token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"password": ADMIN_TOKEN, "csrf_token": token}).status_code == 303
    yield c
    c.close()


@pytest.fixture
def sdk(
    live_server: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MLOpsClient]:
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    yield c
    c.close()


def _csrf(c: httpx.Client, path: str = "/models") -> str:
    return CSRF.search(c.get(path).text).group(1)  # type: ignore[union-attr]


def _model(sdk: MLOpsClient, tmp_path: Path, name: str, stages: list[str]) -> None:
    """``name`` with one version per entry of ``stages``, moved to that stage (no archiving)."""
    src = tmp_path / f"{name}.bin"
    src.write_bytes(b"weights")
    with sdk.start_run(experiment_id="walkthrough-ui") as run:
        run.log_artifact(str(src))
    sdk.register_model(name=name)
    for i, stage in enumerate(stages, start=1):
        sdk.create_model_version(name, run.id, "")
        if stage != "None":
            sdk.transition_model_version_stage(name, i, stage)


def _text(r: httpx.Response) -> str:
    return html.unescape(re.sub(r"\s+", " ", r.text))


def _tags_out(text: str) -> str:
    """Text with inline markup (links, <strong>, <span>) removed, block ends kept."""
    return re.sub(r"<(?!/p>|p )(/?)(a|strong|span)\b[^>]*>", "", text)


# ---------------------------------------------------------------- delete version


def test_delete_version_refusal_is_shown_in_the_dialog(
    web: httpx.Client, sdk: MLOpsClient, tmp_path: Path
) -> None:
    _model(sdk, tmp_path, "m", ["Production", "None"])
    page = web.get("/models/m/versions/2")
    assert 'id="delete-version-dialog"' in page.text and "data-delete-version-form" in page.text
    token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    # The page is now stale: someone else promoted v2 (a deployment serving it is refused
    # the same way, by the registry's delete guards).
    sdk.transition_model_version_stage("m", 2, "Production")
    r = web.post("/models/m/versions/2/delete", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 409
    assert "<html" not in r.text  # a fragment for the dialog, not a "409 Refused" page
    assert "data-delete-version-form" in r.text
    refusal = re.search(r"data-refusal>(.*?)</div></div>", r.text, re.S)
    assert refusal is not None
    assert "is in Production and cannot be deleted" in refusal.group(1)
    assert "Archived first" in refusal.group(1)
    assert sorted(v.version for v in sdk.list_model_versions("m")) == [1, 2]  # nothing deleted
    # Without JavaScript the form posts normally: back to the version page, with the reason.
    r = web.post("/models/m/versions/2/delete", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/models/m/versions/2"
    assert "cannot be deleted" in _text(web.get("/models/m/versions/2"))
    # Once allowed, the same dialog deletes and goes to the model page.
    sdk.transition_model_version_stage("m", 2, "Archived")
    r = web.post("/models/m/versions/2/delete", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 200 and r.headers["HX-Redirect"] == "/models/m"
    assert [v.version for v in sdk.list_model_versions("m")] == [1]


# ---------------------------------------------------------------- 404 while signed in


def test_unknown_url_404_page_shows_the_signed_in_user(
    web: httpx.Client, live_server: LiveServer
) -> None:
    r = web.get("/no/such/page")
    assert r.status_code == 404
    assert 'aria-label="User menu for admin"' in r.text
    assert 'href="/login">Sign in' not in r.text
    # Signed out, the same page offers to sign in.
    r = httpx.get(live_server.url + "/no/such/page")
    assert r.status_code == 404
    assert "User menu for" not in r.text and 'href="/login">Sign in' in r.text


# ---------------------------------------------------------------- delete model, aliases


def test_delete_model_dialog_names_production_versions_before_typing(
    web: httpx.Client, sdk: MLOpsClient, tmp_path: Path
) -> None:
    _model(sdk, tmp_path, "m", ["Production", "Production", "Staging"])
    page = _text(web.get("/models/m"))
    dialog = page.split('id="delete-model-dialog"', 1)[1].split("</dialog>", 1)[0]
    assert "data-production-versions" in dialog
    warning = re.sub(r"<[^>]+>", "", dialog.split("data-production-versions>", 1)[1])
    assert warning.startswith(
        "Versions v1, v2 are in Production. Move them to Archived first: a model with "
        "Production versions cannot be deleted."
    )
    # Before the name is typed: the warning comes first, the button is still disabled.
    assert dialog.index("data-production-versions") < dialog.index("confirm_name")
    # Refused after typing the name: the dialog still names them.
    r = web.post(
        "/models/m/delete", data={"confirm_name": "m", "csrf_token": _csrf(web)}, headers=HX
    )
    assert r.status_code == 409 and "data-production-versions" in r.text
    # With no Production version the warning is absent.
    _model(sdk, tmp_path, "quiet", ["Staging"])
    quiet = web.get("/models/quiet").text
    assert "data-production-versions" not in quiet


def test_alias_deletion_asks_for_confirmation(
    web: httpx.Client, sdk: MLOpsClient, tmp_path: Path
) -> None:
    _model(sdk, tmp_path, "m", ["None", "None"])
    sdk.set_model_alias("m", "champion", 2)
    page = web.get("/models/m").text
    button = re.search(r'<button[^>]*aria-label="Delete alias champion"[^>]*>', page)
    assert button is not None
    tag = html.unescape(button.group(0))
    # Goes through the confirmation dialog, not straight to the server.
    assert "hx-post" not in tag
    assert 'data-confirm-action="/models/m/aliases/champion/delete"' in tag
    assert "Delete alias @champion (now v2)?" in tag
    assert "models:/m@champion will stop resolving" in tag
    # What the confirmation posts (a plain form): deleted, back to the model page.
    r = web.post("/models/m/aliases/champion/delete", data={"csrf_token": _csrf(web)})
    assert r.status_code == 303 and r.headers["location"] == "/models/m"
    assert sdk.list_model_aliases("m") == []


# ---------------------------------------------------------------- model list


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"stage": "Bogus"}, ("Unknown stage 'Bogus'", "Production, Staging, None, Archived")),
        ({"order_by": "colour"}, ("Unknown sort 'colour'", "name, updated, stage")),
        ({"sort": "colour"}, ("Unknown sort 'colour'", "name, updated, stage")),
    ],
)
def test_model_list_says_when_a_filter_or_sort_is_unknown(
    web: httpx.Client, sdk: MLOpsClient, params: dict[str, str], words: tuple[str, ...]
) -> None:
    sdk.register_model(name="m")
    for headers in ({}, HX):
        r = web.get("/models", params=params, headers=headers)
        assert r.status_code == 422
        problem = re.search(r"data-list-problem>(.*?)</div></div>", _text(r), re.S)
        assert problem is not None, r.text
        for w in words:
            assert w in problem.group(1)
        assert 'data-model="m"' in r.text  # the list is still there, without the bad part
    ok = web.get("/models", params={"stage": "production"})  # case-insensitive, as in REST
    assert ok.status_code == 200 and "data-list-problem" not in ok.text


def _listed(r: httpx.Response) -> list[str]:
    return re.findall(r'data-model="([^"]+)"', r.text)


def test_model_list_sorts_by_stage_in_the_page_and_rest(
    web: httpx.Client, sdk: MLOpsClient, api: httpx.Client, tmp_path: Path
) -> None:
    _model(sdk, tmp_path, "a-archived", ["Archived"])
    _model(sdk, tmp_path, "b-prod", ["Staging", "Production"])
    _model(sdk, tmp_path, "c-none", ["None"])
    _model(sdk, tmp_path, "d-staging", ["Staging", "Archived"])
    sdk.register_model(name="e-empty")
    _model(sdk, tmp_path, "f-prod", ["Production"])
    expected = ["b-prod", "f-prod", "d-staging", "c-none", "a-archived", "e-empty"]
    for params in ({"sort": "stage"}, {"order_by": "stage"}):
        r = web.get("/models", params=params)
        assert r.status_code == 200 and "data-list-problem" not in r.text
        assert _listed(r) == expected
    assert '<option value="stage" selected>' in web.get("/models?sort=stage").text
    # REST and SDK: the same order, page by page through the (rank, name) keyset.
    names: list[str] = []
    token = None
    while True:
        page = api.get(
            "/registered-models", params={"order_by": "stage", "limit": 2, "page_token": token}
        ).json()
        names += [m["name"] for m in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert names == expected
    assert [m.name for m in sdk.list_registered_models(order_by="stage")] == expected
    # Filters still apply.
    staged = sdk.list_registered_models(order_by="stage", stage="Staging")
    assert [m.name for m in staged] == ["b-prod", "d-staging"]
    bad = api.get("/registered-models", params={"order_by": "colour"})
    assert bad.status_code == 422 and "name, updated, stage" in bad.json()["error"]["message"]


# ---------------------------------------------------------------- change stage


def test_change_stage_dialog_says_what_happens_to_versions_in_the_target_stage(
    web: httpx.Client, sdk: MLOpsClient, tmp_path: Path
) -> None:
    _model(sdk, tmp_path, "m", ["Production", "Staging", "None"])
    page = _text(web.get("/models/m/versions/3"))
    prod = re.search(r'data-occupants="Production">(.*?)</p>', _tags_out(page))
    stag = re.search(r'data-occupants="Staging">(.*?)</p>', _tags_out(page))
    assert prod is not None and stag is not None
    assert "Now in Production: v1." in prod.group(1)
    assert "checked archives it" in prod.group(1)
    assert "it stays in Production too and Production will hold 2 versions" in prod.group(1)
    assert "Now in Staging: v2." in stag.group(1)
    # A version already alone in its stage sees "no other version" there.
    own = _text(web.get("/models/m/versions/1"))
    assert re.search(r'data-occupants="Production">.*?no other version', own)
    # Moving without archiving is allowed, but the result says two are in Production now.
    r = web.post(
        "/models/m/versions/3/stage",
        data={"stage": "Production", "csrf_token": _csrf(web)},
    )
    assert r.status_code == 303
    after = _text(web.get(r.headers["location"]))
    assert "v1 is still in Production too: 2 versions are in Production now." in after
    assert sdk.get_model_version("m", 1).stage == "Production"


# ---------------------------------------------------------------- schedules form


def test_create_schedule_form_shows_a_cron_error_once(web: httpx.Client, sdk: MLOpsClient) -> None:
    sdk.create_experiment("sentiment-exp")
    r = web.post(
        "/schedules",
        data={
            "name": "nightly",
            "experiment": "sentiment-exp",
            "cron": "0 25 * * *",
            "timezone": "UTC",
            "executor_type": "local",
            "command": "python\ntrain.py",
            "csrf_token": _csrf(web, "/schedules"),
        },
        headers=HX,
    )
    assert r.status_code == 422
    text = _text(r)
    message = re.search(r'id="cron-error" role="alert">([^<]+)<', text)
    assert message is not None and "hour field" in message.group(1)
    assert text.count(message.group(1)) == 1
    assert 'aria-describedby="cron-error"' in text
    # The live preview alone (while typing) still says what is wrong.
    live = web.get("/schedules/-/describe", params={"cron": "0 25 * * *"}, headers=HX)
    assert _text(live).count(message.group(1)) == 1
    assert sdk.list_schedules() == []
