"""Artifact rules: where a file may be logged, listing a run's tree, manifests for the
registry and the set of blobs still referenced (for garbage collection).

Bytes never pass through here: endpoints stream them into the ``BlobStore`` and this module
records which run path points at which digest.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from podstack.errors import Conflict, NotFound
from podstack.schemas.artifact_paths import parent_dirs, validate_artifact_path
from podstack.schemas.artifacts import ArtifactEntry, ArtifactFile, ManifestEntry
from podstack.server.artifacts import repository as repo
from podstack.server.artifacts.models import ArtifactFile as ArtifactRow
from podstack.server.artifacts.store import StoredBlob
from podstack.server.audit import service as audit
from podstack.server.pagination import clamp_limit, decode_token, encode_token
from podstack.server.permissions import service as permissions
from podstack.server.tracking import service as tracking

__all__ = [
    "ManifestEntry",
    "check_upload",
    "get_file",
    "list_artifacts",
    "manifest",
    "record_upload",
    "referenced_digests",
]

_SAMPLE = 10
_BATCH = 100


def _available(s: Session, run_id: str) -> list[str]:
    return [f.path for f in repo.files_under(s, run_id, "", limit=_SAMPLE)]


def _not_found(s: Session, run_id: str, path: str, what: str = "artifact") -> NotFound:
    sample = _available(s, run_id)
    if sample:
        hint = "Available: " + ", ".join(repr(p) for p in sample)
        hint += ", …" if len(sample) == _SAMPLE else ""
    else:
        hint = "This run has no artifacts yet."
    return NotFound(
        f"Run {run_id} has no {what} at {path!r}. {hint}",
        {"run_id": run_id, "path": path, "available": sample},
    )


# ---------------------------------------------------------------- writing


def check_upload(s: Session, run_id: str, path: str) -> None:
    """Everything that can refuse an upload, checked before any byte is read (so a 2 GB body
    to a finished run is answered at once) and again when recording it."""
    validate_artifact_path(path)
    tracking.require_active_run(s, run_id)
    # A path cannot be both a file and a directory: downloading that tree would fail.
    clash = repo.files_at(s, run_id, parent_dirs(path))
    if clash:
        raise Conflict(
            f"Cannot store {path!r}: {clash[0].path!r} is already a file in run {run_id}, "
            "so it cannot also be a directory.",
            {"run_id": run_id, "path": path, "conflicts_with": clash[0].path},
        )
    inner = repo.first_under(s, run_id, path)
    if inner is not None:
        raise Conflict(
            f"Cannot store {path!r}: it is already a directory in run {run_id} "
            f"(it holds {inner.path!r}).",
            {"run_id": run_id, "path": path, "conflicts_with": inner.path},
        )


def record_upload(s: Session, actor: str, run_id: str, path: str, blob: StoredBlob) -> ArtifactFile:
    """Points ``path`` of the run at ``blob``, replacing what the path held before."""
    check_upload(s, run_id, path)
    before = repo.get_file(s, run_id, path)
    before_doc = {"size": before.size, "sha256": before.sha256} if before else None
    repo.upsert_file(s, run_id, path, blob.size, blob.sha256)
    audit.record(
        s,
        actor,
        "artifact.overwrite" if before else "artifact.create",
        "run",
        run_id,
        before_doc and {"path": path, **before_doc},
        {"path": path, "size": blob.size, "sha256": blob.sha256},
    )
    return ArtifactFile(path=path, size=blob.size, sha256=blob.sha256)


def attach_system_file(s: Session, actor: str, run_id: str, path: str, blob: StoredBlob) -> bool:
    """Attaches a file the system owns (a scheduled job's log) to a run in any state: the job
    may have ended its run itself, and the log is the scheduler's record all the same. Returns
    False, storing nothing, when the run already holds a directory at ``path``."""
    try:
        record_upload(s, actor, run_id, path, blob)
        return True
    except Conflict:
        pass
    if repo.first_under(s, run_id, path) is not None:
        return False
    repo.upsert_file(s, run_id, path, blob.size, blob.sha256)
    audit.record(
        s,
        actor,
        "artifact.create",
        "run",
        run_id,
        None,
        {"path": path, "size": blob.size, "sha256": blob.sha256},
    )
    return True


# ---------------------------------------------------------------- reading


def get_file(s: Session, run_id: str, path: str) -> ArtifactRow:
    validate_artifact_path(path)
    tracking.get_run(s, run_id)
    row = repo.get_file(s, run_id, path)
    if row is not None:
        return row
    if repo.first_under(s, run_id, path) is not None:
        raise NotFound(
            f"{path!r} is a directory in run {run_id}, not a file. List it with "
            f"GET /api/v1/runs/{run_id}/artifacts?path={path} or download it with the SDK's "
            "download_artifacts().",
            {"run_id": run_id, "path": path, "is_dir": True},
        )
    raise _not_found(s, run_id, path)


def list_artifacts(
    s: Session,
    run_id: str,
    path: str = "",
    *,
    recursive: bool = False,
    limit: int | None = None,
    page_token: str | None = None,
) -> tuple[list[ArtifactEntry], str | None]:
    """Files under directory ``path`` ("" = root) in path order. Non-recursive listings show
    each sub-directory once as ``is_dir`` instead of its files. ``path`` naming a file lists
    just that file. Keyset pages: the token is the lower bound for the next page."""
    prefix = validate_artifact_path(path, directory=True)
    lim = clamp_limit(limit)
    tracking.get_run(s, run_id)
    token = decode_token(page_token, 2)
    if prefix and token is None:
        exact = repo.get_file(s, run_id, prefix)
        if exact is not None:
            return [_file_entry(exact)], None
        if repo.first_under(s, run_id, prefix) is None:
            raise _not_found(s, run_id, prefix, "artifacts")
    lower: str | None = str(token[0]) if token else None
    inclusive = bool(token[1]) if token else False
    entries: list[ArtifactEntry] = []
    bounds: list[tuple[str, bool]] = []  # the next page's lower bound after each entry
    cut = len(prefix) + 1 if prefix else 0
    while len(entries) <= lim:
        # Small batches: a collapsed directory ends the batch, so a big one would be wasted.
        batch = min(lim + 1 - len(entries), _BATCH)
        rows = repo.files_under(s, run_id, prefix, lower=lower, inclusive=inclusive, limit=batch)
        for row in rows:
            rest = row.path[cut:]
            if recursive or "/" not in rest:
                entries.append(_file_entry(row))
                lower, inclusive = row.path, False
                bounds.append((lower, inclusive))
            else:
                # Collapse the directory, then continue right after everything inside it.
                d = row.path[:cut] + rest.split("/", 1)[0]
                entries.append(ArtifactEntry(path=d, is_dir=True))
                lower, inclusive = d + "0", True
                bounds.append((lower, inclusive))
                break
        else:
            if len(rows) < batch:
                break  # no more files
    if len(entries) > lim:
        next_lower, next_inclusive = bounds[lim - 1]
        return entries[:lim], encode_token([next_lower, next_inclusive])
    return entries, None


def _file_entry(row: ArtifactRow) -> ArtifactEntry:
    return ArtifactEntry(path=row.path, is_dir=False, size=row.size, sha256=row.sha256)


def manifest(session: Session, run_id: str, artifact_path: str) -> list[ManifestEntry]:
    """The files a registry version built from ``artifact_path`` of the run consists of.

    ``artifact_path`` names a file, or a directory ("" or "/" for the whole run). Entries'
    paths are relative to the run root, in path order. Raises ``NotFound`` (saying the run
    does not exist, or naming the path and listing a few that exist) if nothing matches,
    ``ValidationFailed`` for a malformed path.
    """
    prefix = validate_artifact_path(artifact_path or "", directory=True)
    # One query for both readings of the path. A file found proves the run exists (its row
    # references the run), so the run is looked up only on a miss, to say which is missing.
    if permissions.is_restricted(session):
        # file_or_under is Core on the connection, which the read filter does not narrow: a
        # caller who cannot read the run must not build a version from its files (and then
        # download them from a model of their own). The ORM lookup answers the usual 404.
        tracking.get_run(session, run_id)
    rows = repo.file_or_under(session, run_id, prefix)
    if not rows:
        tracking.get_run(session, run_id)
        raise _not_found(session, run_id, prefix or "/", "artifacts")
    if rows[0][0] == prefix:
        # The exact file (it sorts first). A path is never both a file and a directory
        # (check_upload), so anything else in the range cannot be meant.
        rows = rows[:1]
    return [ManifestEntry(path=p, size=n, sha256=h) for p, n, h in rows]


def referenced_digests(session: Session) -> set[str]:
    """Digests run artifacts point at. A garbage collector may delete a blob only if neither
    this nor any other capability's references (registry snapshots) include it."""
    return repo.distinct_digests(session)
