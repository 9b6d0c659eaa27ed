"""A model version's page (Overview, Artifacts, Metrics, Lineage tabs), Change Stage, tags,
description, Delete Version, and downloading selected files as a zip stream."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from podstack.errors import PodstackError, ValidationFailed
from podstack.schemas import registry as rsch
from podstack.server.artifacts.store import BlobStore
from podstack.server.provenance import service as provenance
from podstack.server.registry import service as registry
from podstack.server.registry import stages
from podstack.server.registry import views as registry_views
from podstack.server.registry.rules import EXCLUSIVE_STAGES
from podstack.server.tracking import service as tracking
from podstack.server.web.core import EditorAction, ViewerPage, WebCtx, WebRoute
from podstack.server.web.views import lineage_data, metric_series, register_errors

router = APIRouter(route_class=WebRoute, include_in_schema=False)
TABS = ("overview", "artifacts", "metrics", "lineage")
# "Comparison with other versions" on the Metrics tab: this one and the most recent others.
COMPARE_WITH = 5
MAX_CHARTS = 24
HISTORY_POINTS = 10_000
V = "/models/{name}/versions/{version}"


def version_url(name: str, version: int, tab: str | None = None) -> str:
    url = f"/models/{quote(name, safe='')}/versions/{version}"
    return f"{url}?tab={tab}" if tab and tab != "overview" else url


def _version(s: Session, name: str, version: str) -> rsch.ModelVersion:
    m, mv = registry.get_version(s, name, version)
    return registry_views.version_view(s, m, mv)


def _metrics_tab(s: Session, v: rsch.ModelVersion) -> dict[str, Any]:
    run = v.source_run
    charts = []
    if run is not None:
        for key in sorted(run.metrics)[:MAX_CHARTS]:
            rows, _ = tracking.metric_history(s, run.id, key, HISTORY_POINTS)
            charts.append(
                {
                    "key": key,
                    "latest": run.metrics[key],
                    "series": [{"label": key, "points": metric_series(rows)}],
                }
            )
    _, others, _ = registry.list_versions(s, v.model_name, limit=1000)
    numbers = [o.version for o in others if o.version != v.version][-COMPARE_WITH:]
    comparison = None
    if numbers:
        comparison = registry_views.compare_versions(
            s, v.model_name, [v.version, *sorted(numbers, reverse=True)], max_points=2
        )
    return {"charts": charts, "comparison": comparison}


def _stage_occupants(s: Session, v: rsch.ModelVersion) -> dict[str, list[int]]:
    """The *other* versions now in each stage that ``archive_existing`` applies to, so the
    Change Stage dialog can say what moving this version there does to them."""
    out: dict[str, list[int]] = {}
    for stage in EXCLUSIVE_STAGES:
        _, rows, _ = registry.list_versions(s, v.model_name, stage=stage, limit=1000)
        out[stage] = [r.version for r in rows if r.version != v.version]
    return out


@router.get(V)
def version_page(ctx: ViewerPage, name: str, version: str, tab: str = "overview") -> Response:
    tab = tab if tab in TABS else "overview"
    extra: dict[str, Any] = {}
    with ctx.read() as s:
        v = _version(s, name, version)
        occupants = _stage_occupants(s, v)
        _, transitions = stages.stage_history(s, name, v.version)
        history = registry_views.transition_views(registry.get_model(s, name), transitions)
        # Who signed, with which key, and whether it still verifies (checked now).
        extra["signatures"] = provenance.check_version(s, name, v.version).signatures
        if tab == "metrics":
            extra.update(_metrics_tab(s, v))
        if tab == "lineage":
            extra["lineage"] = lineage_data(registry_views.lineage(s, name, v.version))
    return ctx.render(
        "registry/version.html",
        section="registry",
        v=v,
        tab=tab,
        history=list(reversed(history)),
        total_size=sum(f.size for f in v.files or []),
        stage_form={"stage": "", "note": "", "archive_existing": False},
        occupants=occupants,
        errors={},
        **extra,
    )


# ---------------------------------------------------------------- stage


@router.post(V + "/stage")
def change_stage(
    ctx: EditorAction,
    name: str,
    version: str,
    stage: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    archive_existing: Annotated[bool, Form()] = False,
) -> Response:
    form = {"stage": stage, "note": note, "archive_existing": archive_existing}
    try:
        if not stage:
            raise ValidationFailed("Choose the stage to move this version to.", {"field": "stage"})
        with ctx.write() as s:
            outcome = stages.transition_stage(
                s,
                ctx.actor,
                name,
                version,
                stage,
                note=note.strip() or None,
                archive_existing=archive_existing,
            )
            number = outcome.version.version
            now_in = outcome.version.stage
            still_there = []
            if outcome.applied and now_in in EXCLUSIVE_STAGES:
                _, rows, _ = registry.list_versions(s, name, stage=now_in, limit=1000)
                still_there = [r.version for r in rows if r.version != number]
    except PodstackError as exc:
        with ctx.read() as s:
            v = _version(s, name, version)
            occupants = _stage_occupants(s, v)
        return ctx.render(
            "registry/_stage_form.html",
            status_code=422 if exc.status in (400, 422) else exc.status,
            v=v,
            stage_form=form,
            occupants=occupants,
            # Errors about other things (e.g. approval gates naming the model) go on top.
            errors=register_errors(exc, fields=("stage", "note")),
        )
    url = version_url(name, number)
    if outcome.interception is not None:
        return ctx.redirect(url, outcome.interception.message, "warning")
    if not outcome.applied:
        return ctx.redirect(url, f"Version {number} is already in {now_in}.", "warning")
    if still_there:
        # Allowed (archive_existing was not asked for), but never silent.
        listed = ", ".join(f"v{n}" for n in still_there)
        verb = "is" if len(still_there) == 1 else "are"
        return ctx.redirect(
            url,
            f"Version {number} moved to {now_in}. {listed} {verb} still in {now_in} too: "
            f"{len(still_there) + 1} versions are in {now_in} now.",
            "warning",
        )
    return ctx.redirect(url, f"Version {number} moved to {now_in}.")


# ---------------------------------------------------------------- description and tags


@router.post(V + "/description")
def edit_description(
    ctx: EditorAction, name: str, version: str, description: Annotated[str, Form()] = ""
) -> Response:
    with ctx.write() as s:
        _, mv = registry.update_version(s, ctx.actor, name, version, description.strip())
        number = mv.version
    return ctx.redirect(version_url(name, number), "Description saved.")


@router.post(V + "/tags")
def set_tag(
    ctx: EditorAction,
    name: str,
    version: str,
    key: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    from pydantic import ValidationError

    try:
        body = rsch.VersionTagIn(key=key.strip(), value=value)
        with ctx.write() as s:
            registry.set_version_tag(s, ctx.actor, name, version, body.key, body.value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "key"
        message = (
            "Tag keys are 1–250 characters of letters, digits, spaces and _ - . / :"
            if field == "key"
            else "Tag values are at most 5000 characters."
        )
        return _tags_form(ctx, name, version, {field: message}, {"key": key, "value": value})
    except PodstackError as exc:
        return _tags_form(ctx, name, version, {"_form": exc.message}, {"key": key, "value": value})
    return ctx.redirect(version_url(name, int(version)), f"Tag {key.strip()} saved.")


def _tags_form(
    ctx: WebCtx, name: str, version: str, errors: dict[str, str], form: dict[str, str]
) -> Response:
    with ctx.read() as s:
        v = _version(s, name, version)
    return ctx.render(
        "registry/_tags_form.html", status_code=422, v=v, errors=errors, tag_form=form
    )


@router.post(V + "/tags/{key:path}/delete")
def delete_tag(ctx: EditorAction, name: str, version: str, key: str) -> Response:
    with ctx.write() as s:
        registry.delete_version_tag(s, ctx.actor, name, version, key)
    return ctx.redirect(version_url(name, int(version)), f"Tag {key} deleted.")


# ---------------------------------------------------------------- delete


@router.post(V + "/delete")
def delete_version(ctx: EditorAction, name: str, version: str) -> Response:
    try:
        with ctx.write() as s:
            registry.delete_version(s, ctx.actor, name, version)
    except PodstackError as exc:
        if exc.status != 409:
            raise  # unknown model or version, malformed number: the ordinary error page
        with ctx.read() as s:
            v = _version(s, name, version)
        if not ctx.htmx:
            # Without JavaScript: back to the version's page, with the refusal as a message.
            return ctx.redirect(version_url(name, v.version), exc.message, "error")
        # Refused (served by a deployment, moved to Production meanwhile, …): say why in the
        # dialog, as Delete Model does, instead of replacing the page with an error page.
        return ctx.render(
            "registry/_delete_version_form.html", status_code=409, v=v, error=exc.message
        )
    return ctx.redirect(f"/models/{quote(name, safe='')}", f"Version {version} of {name} deleted.")


# ---------------------------------------------------------------- download


class _Sink:
    """A write-only file object for ``zipfile`` that hands written bytes to a generator."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, b: bytes) -> int:
        self.parts.append(bytes(b))
        self.offset += len(b)
        return len(b)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _zip_stream(store: BlobStore, files: list[tuple[str, str]]) -> Iterator[bytes]:
    """Streams a zip of ``(path, sha256)`` files without holding any file in memory: stored
    (model weights rarely compress), zip64 so any size works, each blob verified as read."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:  # type: ignore[arg-type]
        for path, sha in files:
            info = zipfile.ZipInfo(path)
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as entry:
                for chunk in store.iter_blob(sha, verify=True):
                    entry.write(chunk)
                    if data := sink.drain():
                        yield data
            if data := sink.drain():
                yield data
    yield sink.drain()


# Single files at least this large are fetched by the browser straight from the object store.
PRESIGNED_DOWNLOAD_MIN_BYTES = 32 * 1024 * 1024


def presigned_download(ctx: Any, file: tuple[str, str], size: int) -> str | None:
    """A short-lived presigned GET for one large file on the S3 store, so its bytes skip the
    server; None to stream it (local store, proxied mode, or a small file)."""
    store = ctx.state.store
    if (
        size < PRESIGNED_DOWNLOAD_MIN_BYTES
        or ctx.settings.artifacts_proxy
        or not hasattr(store, "presigned_get")
    ):
        return None
    name = file[0].rsplit("/", 1)[-1]
    return str(store.presigned_get(file[1], name, ctx.settings.artifacts_presign_seconds))


@router.get(V + "/download")
def download(
    ctx: ViewerPage,
    name: str,
    version: str,
    path: Annotated[list[str], Query()] = [],  # noqa: B006
) -> Response:
    """One selected file: its verified single-file download. Several (or none = all): a zip."""
    with ctx.read() as s:
        rows = registry.version_files(s, name, version)
        _, mv = registry.get_version(s, name, version)
        number = mv.version
        if path:
            wanted = set(path)
            rows = [registry.version_file(s, name, version, p) for p in sorted(wanted)]
        files = [(r.path, r.sha256) for r in rows]
        sizes = [r.size for r in rows]
    if not files:
        raise ValidationFailed("This version has no files to download.", {})
    if len(files) == 1 and path and (url := presigned_download(ctx, files[0], sizes[0])):
        return RedirectResponse(url, status_code=303)
    if len(files) == 1 and path:
        api = f"/api/v1/registered-models/{quote(name, safe='')}/versions/{number}/files/"
        return RedirectResponse(api + quote(files[0][0], safe="/"), status_code=303)
    store: BlobStore = ctx.state.store
    filename = f"{name}-v{number}.zip"
    return StreamingResponse(
        _zip_stream(store, files),
        media_type="application/zip",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )
