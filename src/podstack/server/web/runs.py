"""A run's page (overview, metric charts, artifact browser) and "Register to Model Registry"."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from podstack.errors import NotFound, PodstackError, ValidationFailed
from podstack.schemas import tracking as sch
from podstack.schemas.artifact_paths import parent_dirs
from podstack.server.artifacts import service as artifacts
from podstack.server.registry import service as registry
from podstack.server.tracking import service as tracking
from podstack.server.web import artifact_preview
from podstack.server.web.core import EditorAction, ViewerPage, WebCtx, WebRoute
from podstack.server.web.views import metric_series, register_errors

router = APIRouter(route_class=WebRoute, include_in_schema=False)
TABS = ("overview", "metrics", "artifacts")
ARTIFACTS_PAGE = 200
# The register dialog offers at most this many paths (files and the directories above them).
MAX_REGISTER_CHOICES = 1000
MAX_CHARTS = 40
HISTORY_POINTS = 10_000
SUGGESTIONS = 20
# Metrics logged by the SDK's system-metrics sampler (start_run(log_system_metrics=True)).
SYSTEM_PREFIX = "system/"


def _run(s: Session, run_id: str) -> tuple[sch.Run, sch.Experiment]:
    run = tracking.run_view(s, tracking.get_run(s, run_id))
    exp = sch.Experiment.model_validate(tracking.get_experiment(s, run.experiment_id))
    return run, exp


def _artifact_choices(s: Session, run_id: str) -> list[dict[str, Any]]:
    """Every file and directory a version could be built from, directories first per level."""
    files, _ = artifacts.list_artifacts(s, run_id, "", recursive=True, limit=MAX_REGISTER_CHOICES)
    dirs: dict[str, int] = {}
    for f in files:
        for d in parent_dirs(f.path):
            dirs[d] = dirs.get(d, 0) + 1
    choices = [{"path": d, "is_dir": True, "files": n} for d, n in dirs.items()]
    choices += [{"path": f.path, "is_dir": False, "size": f.size} for f in files]
    return sorted(choices, key=lambda c: c["path"])


@router.get("/runs/{run_id}")
def run_page(
    ctx: ViewerPage,
    run_id: str,
    tab: str = "overview",
    path: str = "",
    page_token: str | None = None,
    preview: str = "",
) -> Response:
    tab = tab if tab in TABS else "overview"
    extra: dict[str, Any] = {}
    with ctx.read() as s:
        run, exp = _run(s, run_id)
        if tab == "metrics":
            # Model metrics first; system metrics (CPU, memory, GPU) in their own section.
            ordered = sorted(run.metrics, key=lambda k: (k.startswith(SYSTEM_PREFIX), k))
            keys = ordered[:MAX_CHARTS]
            extra["charts"] = [
                {
                    "key": k,
                    "latest": run.metrics.get(k),
                    "series": [
                        {
                            "label": k,
                            "points": metric_series(
                                tracking.metric_history(s, run.id, k, HISTORY_POINTS)[0]
                            ),
                        }
                    ],
                    "system": k.startswith(SYSTEM_PREFIX),
                }
                for k in keys
            ]
            extra["more_metrics"] = max(0, len(run.metrics) - MAX_CHARTS)
        if tab == "artifacts":
            try:
                entries, token = artifacts.list_artifacts(
                    s, run.id, path, limit=ARTIFACTS_PAGE, page_token=page_token
                )
            except NotFound:
                if path:
                    raise
                entries, token = [], None
            extra.update(entries=entries, next_token=token, path=path, crumbs=_crumbs(path))
            if preview:
                extra["preview"] = _preview(ctx, s, run.id, preview)
        # Editors can register from any tab (the header button); viewers never see the dialog.
        extra["choices"] = _artifact_choices(s, run.id) if ctx.can_edit else []
        extra["names"] = _model_names(s) if ctx.can_edit else []
    return ctx.render(
        "experiments/run.html",
        section="experiments",
        run=run,
        exp=exp,
        tab=tab,
        form={},
        errors={},
        **extra,
    )


def _preview(ctx: WebCtx, s: Session, run_id: str, path: str) -> artifact_preview.Preview:
    """The preview of one file: only its first bytes are read (images: none, the browser
    loads them from ``/runs/<id>/image/<path>``)."""
    row = artifacts.get_file(s, run_id, path)
    if artifact_preview.kind_of(path) in ("image", "parquet"):
        return artifact_preview.build(path, row.size, None)
    return artifact_preview.build(
        path, row.size, ctx.state.store.iter_blob(row.sha256, verify=False)
    )


@router.get("/runs/{run_id}/image/{path:path}")
def artifact_image(ctx: ViewerPage, run_id: str, path: str) -> Response:
    """An image artifact for the preview's ``<img>``: its type fixed by the extension (never
    sniffed), SVG sandboxed by its own CSP so scripts in it never run."""
    content_type = artifact_preview.image_type(path)
    if content_type is None:
        raise ValidationFailed(
            f"{path!r} is not an image (PNG, JPEG, GIF, WebP or SVG); preview it on the run's "
            "Artifacts tab or download it.",
            {"path": path},
        )
    with ctx.read() as s:
        row = artifacts.get_file(s, run_id, path)
        size, sha256 = row.size, row.sha256
    if size > artifact_preview.MAX_IMAGE_BYTES:
        raise ValidationFailed(
            f"{path!r} is too large to preview ({size} bytes; the limit is "
            f"{artifact_preview.MAX_IMAGE_BYTES}); download it instead.",
            {"path": path, "size": size},
        )
    return StreamingResponse(
        ctx.state.store.iter_blob(sha256, verify=True),
        media_type=content_type,
        headers={
            "Content-Length": str(size),
            "Content-Security-Policy": artifact_preview.IMAGE_CSP,
            "Cache-Control": "private, max-age=3600",
            "ETag": f'"{sha256}"',
        },
    )


def _model_names(s: Session, q: str | None = None) -> list[str]:
    """The first model names for the register dialog's suggestions (typing asks for more)."""
    items, _ = registry.search_models(s, q=q, limit=SUGGESTIONS)
    return [m.name for m in items]


def _crumbs(path: str) -> list[tuple[str, str]]:
    if not path:
        return []
    parts = path.split("/")
    return [("/".join(parts[: i + 1]), p) for i, p in enumerate(parts)]


def _register_form(
    ctx: WebCtx, run_id: str, form: dict[str, str], errors: dict[str, str], status: int
) -> Response:
    with ctx.read() as s:
        run, exp = _run(s, run_id)
        choices = _artifact_choices(s, run.id)
        names = _model_names(s, form.get("model_name") or None)
    return ctx.render(
        "experiments/_register_form.html",
        status_code=status,
        run=run,
        exp=exp,
        choices=choices,
        names=names,
        form=form,
        errors=errors,
    )


@router.post("/runs/{run_id}/register")
def register_from_run(
    ctx: EditorAction,
    run_id: str,
    artifact_path: Annotated[str, Form()] = "",
    mode: Annotated[str, Form()] = "existing",
    model_name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    form = {
        "artifact_path": artifact_path,
        "mode": mode,
        "model_name": model_name,
        "description": description,
    }
    name = model_name.strip()
    errors: dict[str, str] = {}
    if not artifact_path:
        errors["artifact_path"] = "Choose the artifact (file or directory) to register."
    if not name:
        errors["model_name"] = (
            "Choose the model to add a version to."
            if mode == "existing"
            else "Name the new model, e.g. sentiment-classifier."
        )
    if errors:
        return _register_form(ctx, run_id, form, errors, 422)
    try:
        with ctx.write() as s:
            if mode == "new":
                registry.register_model(s, ctx.actor, name)
            else:
                registry.get_model(s, name)  # "existing" must exist: no silent auto-register
            new = registry.add_version(
                s,
                ctx.actor,
                name,
                run_id,
                artifact_path,
                description=description.strip() or None,
            )
            target = f"/models/{new.model.name}/versions/{new.version.version}"
            number = new.version.version
    except PodstackError as exc:
        if isinstance(exc, NotFound) and mode == "existing" and "model_name" in exc.details:
            exc = ValidationFailed(
                f"There is no model named {name!r}. Pick one from the list, or choose "
                "“New model” to register it.",
                {"field": "model_name"},
            )
        errors = register_errors(exc, ("artifact_path", "model_name", "description"))
        return _register_form(ctx, run_id, form, errors, 422)
    return ctx.redirect(target, f"Registered {name} version {number}.")
