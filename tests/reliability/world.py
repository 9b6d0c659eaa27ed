"""One of everything, for tests that walk every route: users of every kind with tokens, an
experiment with a run (params, metrics, tags, an artifact), models with versions, aliases and
tags, approval requests, a reviewer group, a webhook with a delivery, a schedule with an
execution, a notification.

``path_for(method, template, world)`` fills a route template's parameters with those objects,
so a new route is exercised as soon as it exists; a parameter it cannot fill fails loudly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from podstack import MLOpsClient
from podstack.errors import ApprovalRequired
from tests.conftest import ADMIN_TOKEN

MODEL = "acl-model"
DOOMED = "acl-doomed"  # what DELETE routes delete, so other routes keep their objects
PASSWORD = "correct horse battery staple"


@dataclass
class World:
    url: str
    tokens: dict[str, str | None]  # caller kind -> bearer token (anonymous: None)
    usernames: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)


def build(url: str, tmp_path: Path, *, tag: str = "acl") -> World:
    """Creates the world through the API as admin (real requests, real rules)."""
    names = {
        "viewer": f"{tag}-viewer",
        "editor": f"{tag}-editor",
        "reviewer": f"{tag}-reviewer",
        "admin": "admin",
    }
    ids: dict[str, str] = {}
    tokens: dict[str, str | None] = {"anonymous": None, "admin": ADMIN_TOKEN}
    with MLOpsClient(api_token=ADMIN_TOKEN, url=url) as admin:
        for kind in ("viewer", "editor", "reviewer"):
            role = "editor" if kind == "editor" else "viewer"
            admin.create_user(
                names[kind], role, password=PASSWORD, email=f"{names[kind]}@example.com"
            )
            tokens[kind] = admin.create_token("acl", username=names[kind]).token
        # A second token of the editor's: the one token routes revoke.
        spare = admin.create_token("spare", username=names["editor"])
        ids["token_id"] = str(spare.id)
        admin.create_group(f"{tag}-group", members=[names["reviewer"]])
        ids["group"] = f"{tag}-group"
        hook = admin.create_webhook("http://127.0.0.1:9/hook", events=["*"])
        ids["webhook_id"] = hook.id

    with MLOpsClient(api_token=tokens["editor"], url=url) as editor:
        run = editor.create_run(f"{tag}-exp", run_name="acl-run", tags={"team": "acl"})
        editor.log_params(run.id, {"lr": "0.1"})
        editor.log_metrics(run.id, {"loss": 0.5, "acc": 0.9}, step=1)
        model_file = tmp_path / "model.bin"
        model_file.write_bytes(b"acl weights")
        editor.log_artifact(run.id, model_file)
        ids["run_id"] = run.id
        ids["experiment_id"] = run.experiment_id
        for name in (MODEL, DOOMED):
            editor.register_model(name, description="acl model")
            for _ in range(4):
                v = editor.create_model_version(name, run.id, "model.bin")
                editor.set_model_version_tag(name, v.version, "k", "v")
            editor.set_model_alias(name, "champion", 1)
        # A second run the run-level DELETE routes may destroy.
        doomed_run = editor.create_run(f"{tag}-exp", run_name="doomed", tags={"team": "acl"})
        ids["doomed_run_id"] = doomed_run.id
        doomed_exp = editor.create_experiment(f"{tag}-doomed-exp")
        ids["doomed_experiment_id"] = doomed_exp.id

    with MLOpsClient(api_token=ADMIN_TOKEN, url=url) as admin:
        admin.set_approval_policy(MODEL, gated_stages=["Production"], reviewers=[names["reviewer"]])
    # One pending request per deciding route, so each finds its own request still pending:
    # versions 1-4 of MODEL, requested by the editor.
    with MLOpsClient(api_token=tokens["editor"], url=url) as editor:
        for version, purpose in enumerate(("approve", "reject", "cancel", "comment"), start=1):
            try:
                editor.transition_model_version_stage(MODEL, version, "Production")
            except ApprovalRequired as exc:
                ids[f"request_{purpose}"] = exc.details["request_id"]
            else:  # pragma: no cover - the policy gates Production
                raise AssertionError("the approval policy did not gate Production")
    with httpx.Client(base_url=url + "/api/v1", timeout=30) as h:
        h.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        r = h.get(f"/webhooks/{ids['webhook_id']}/deliveries")
        r.raise_for_status()
        ids["delivery_id"] = r.json()["items"][0]["id"]
        r = h.post(
            "/schedules",
            json={
                "name": f"{tag}-nightly",
                "experiment_id": ids["experiment_id"],
                "cron": "0 3 * * *",
                "executor": {"type": "webhook", "url": "http://127.0.0.1:9/", "secret": "s" * 32},
            },
        )
        r.raise_for_status()
        ids["schedule"] = f"{tag}-nightly"
        r = h.post(f"/schedules/{ids['schedule']}/trigger")
        r.raise_for_status()
        ids["execution_id"] = r.json()["id"]
        h.headers["Authorization"] = f"Bearer {tokens['reviewer']}"
        r = h.get("/notifications")
        r.raise_for_status()
        ids["notification_id"] = str(r.json()["items"][0]["id"])
    return World(url=url, tokens=tokens, usernames=names, ids=ids)


_PARAM = re.compile(r"\{([^}:]+)(?::path)?\}")


def path_for(method: str, template: str, world: World) -> str:
    """The template with every ``{param}`` replaced by an object of the world."""
    ids = world.ids
    prefix = template.removeprefix("/api/v1")
    doomed = method == "DELETE"

    def value(param: str, before: str) -> str:
        last = [s for s in before.split("/") if s][-1:] or [""]
        segment = last[0]
        match param:
            case "name":
                if "/groups" in before:
                    return ids["group"]
                if before.startswith("/registered-models"):
                    return DOOMED if doomed else MODEL
                if before.startswith(("/deployments", "/endpoints", "/deployment-targets")):
                    return "acl-endpoint"  # none exists: reached only past authorisation
                if before.startswith("/models"):  # UI
                    return DOOMED if "delete" in template else MODEL
                if before.startswith(("/service-accounts", "/admin/service-accounts")):
                    return "acl-bot"  # none exists: reached only past authorisation
            case "version":
                return "4" if doomed or "delete" in template else "1"
            case "ref":
                if before.startswith("/schedules"):
                    return ids["schedule"]
                return ids["doomed_experiment_id"] if doomed else ids["experiment_id"]
            case "run_id":
                return ids["doomed_run_id"] if doomed else ids["run_id"]
            case "request_id":
                action = template.rsplit("/", 1)[-1]
                if template.endswith("/comments"):
                    return ids["request_comment"]
                return ids.get(f"request_{action}", ids["request_comment"])
            case "model":
                return MODEL
            case "alias":
                return "champion"
            case "stage":
                return "Production"
            case "key":
                if "metrics" in before:
                    return "loss"
                return "k" if "versions" in before else "team"
            case "path":
                if segment in ("v2",):
                    return "models"
                return "model.bin"
            case "username":
                return world.usernames["reviewer"]
            case "upload_id":
                return "upl-none"  # none exists: reached only past authorisation
            case "model_id":  # an MLflow logged model: none exists, reached past authorisation
                return "m-" + "0" * 32
            case "tag_key":
                return "team"
            case "grantee_type":
                return "user"
            case "grantee":
                return world.usernames["reviewer"]
            case "token_id" | "webhook_id" | "delivery_id" | "execution_id" | "notification_id":
                return ids[param]
        raise AssertionError(
            f"tests/reliability/world.py cannot fill {{{param}}} in {method} {template}: "
            "teach path_for() which object it names"
        )

    out = ""
    pos = 0
    for m in _PARAM.finditer(template):
        out += template[pos : m.start()]
        out += quote(value(m.group(1), template[: m.start()].removeprefix("/api/v1")), safe="")
        pos = m.end()
    del prefix
    return out + template[pos:]
