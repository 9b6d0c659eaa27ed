"""Signatures and provenance of model versions: every rule about them lives here.

- Every new version is signed by the server in the transaction that creates it (the
  ``version.created`` sink), so no version exists unsigned once this capability runs.
- Anyone with edit rights may attach their own signature (CI keys, a reviewer's key); it is
  checked against the version's manifest before it is recorded.
- A signature is *valid* when it verifies with its key and covers exactly the version's
  files and digests; ``required_keys_missing`` is what policies and production endpoints ask.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy.orm import Session

from podstack import model_signatures as ms
from podstack.errors import SignatureInvalid, ValidationFailed
from podstack.schemas import provenance as sch
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.provenance import repository as repo
from podstack.server.provenance.keys import ServerKey
from podstack.server.provenance.models import SigningKey, VersionSignature
from podstack.server.registry import service as registry
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.server.tracking import service as tracking

log = logging.getLogger("podstack.provenance")
SERVER_KEY_INFO = "podstack.signing_key"  # Database.info / Session.info entry
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://podstack.dev/provenance/v1"
# Tags a run may carry naming the code version that produced it.
GIT_COMMIT_TAGS = ("git_commit", "git.commit", "podstack.git.commit", "mlflow.source.git.commit")


def register_server_key(s: Session, key: ServerKey) -> None:
    """Records the server's public key once (kept after a rotation, for old signatures)."""
    if repo.get_key(s, key.key_id) is None:
        repo.add_key(
            s,
            SigningKey(
                key_id=key.key_id,
                public_pem=key.public_pem,
                owner="server",
                kind="server",
                created_at=utcnow(),
            ),
        )


def _files(s: Session, mv: ModelVersion) -> list[ms.FileDigest]:
    return [ms.FileDigest(f.path, f.sha256) for f in registry.files_of_version(s, mv.id)]


def manifest_digest(files: list[ms.FileDigest]) -> str:
    """One sha256 for the whole version: over ``path\\0sha256\\n`` lines in path order."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        h.update(f"{f.path}\0{f.sha256}\n".encode())
    return h.hexdigest()


def provenance_statement(
    s: Session, m: RegisteredModel, mv: ModelVersion, files: list[ms.FileDigest]
) -> dict[str, Any]:
    """What produced these bytes: the source run (parameters, code version), its datasets'
    digests and the parent model, as an in-toto statement about the version's manifest."""
    run = tracking.run_facts(s, mv.source_run_id)
    commit = next((run.tags[t] for t in GIT_COMMIT_TAGS if t in run.tags), None)
    parent = None
    if mv.parent_version_id is not None:
        pmv = s.get(ModelVersion, mv.parent_version_id)
        pm = s.get(RegisteredModel, pmv.model_id) if pmv else None
        if pmv is not None and pm is not None:
            parent = f"models:/{pm.name}/{pmv.version}"
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": f"models:/{m.name}/{mv.version}",
                "digest": {"sha256": manifest_digest(files)},
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "model": m.name,
            "version": mv.version,
            "created_by": mv.created_by,
            "created_at": mv.created_at.isoformat(),
            "artifact_path": mv.artifact_path,
            "files": [{"path": f.path, "sha256": f.sha256} for f in files],
            "source_run": {
                "id": run.id,
                "experiment_id": run.experiment_id,
                "params": run.params,
                "git_commit": commit,
            },
            "datasets": [
                {"name": d.name, "digest": d.digest, "source_uri": d.source_uri}
                for d in run.datasets
            ],
            "parent": parent,
        },
    }


def sign_version(
    s: Session, key: ServerKey, m: RegisteredModel, mv: ModelVersion, files: list[ms.FileDigest]
) -> None:
    register_server_key(s, key)
    bundle = ms.sign(key.path, f"{m.name}-v{mv.version}", files)
    statement = provenance_statement(s, m, mv, files)
    envelope = ms.sign_statement(key.path, key.key_id, statement)
    repo.add_signature(
        s,
        VersionSignature(
            version_id=mv.id,
            key_id=key.key_id,
            kind="server",
            signer="server",
            bundle=bundle,
            statement=json.dumps(envelope),
            created_at=utcnow(),
        ),
    )


def on_version_created(
    s: Session, m: RegisteredModel, mv: ModelVersion, files: list[tuple[str, int, str]]
) -> None:
    """The registry's version-created hook: ``files`` are the new rows, (path, size, sha256)."""
    key: ServerKey | None = s.info.get(SERVER_KEY_INFO)
    if key is None:
        # A database opened outside the server (a maintenance command): nothing to sign with.
        log.warning("version %s/%s created without a server signing key", m.name, mv.version)
        return
    sign_version(s, key, m, mv, [ms.FileDigest(path, sha) for path, _size, sha in files])


# ---------------------------------------------------------------- attaching a signature


def attach_signature(
    s: Session, actor: str, name: str, version: Any, body: sch.SignatureIn
) -> sch.SignatureCheck:
    """Records a user's (or CI's) signature after checking it covers this version exactly."""
    m, mv = registry.get_version(s, name, version)
    try:
        kid = ms.key_id(body.public_key)
        ms.verify(body.bundle, body.public_key, _files(s, mv))
    except ms.SignatureError as exc:
        raise ValidationFailed(
            f"Signature refused for {m.name!r} version {mv.version}: {exc.message}",
            {"field": "bundle", "files": exc.files},
        ) from None
    if repo.get_key(s, kid) is None:
        repo.add_key(
            s,
            SigningKey(
                key_id=kid,
                public_pem=ms.public_pem(ms.load_public_key(body.public_key)),
                owner=actor,
                kind="user",
                created_at=utcnow(),
            ),
        )
    sig = VersionSignature(
        version_id=mv.id,
        key_id=kid,
        kind="user",
        signer=actor,
        bundle=body.bundle,
        statement=None,
        created_at=utcnow(),
    )
    repo.add_signature(s, sig)
    audit.record(
        s,
        actor,
        "version.sign",
        "model_version",
        f"{m.name}/{mv.version}",
        None,
        {"key_id": kid},
    )
    return _check(sig, repo.get_key(s, kid), _files(s, mv))


# ---------------------------------------------------------------- checking


def _check(
    sig: VersionSignature, key: SigningKey | None, files: list[ms.FileDigest]
) -> sch.SignatureCheck:
    valid, problem, bad = True, None, []
    statement = envelope = None
    if key is None:
        valid, problem = False, f"Unknown key {sig.key_id}."
    else:
        try:
            ms.verify(sig.bundle, key.public_pem, files)
        except ms.SignatureError as exc:
            valid, problem, bad = False, exc.message, exc.files
        if sig.statement:
            envelope = json.loads(sig.statement)
            try:
                statement = ms.verify_statement(envelope, key.public_pem)
            except ms.SignatureError as exc:
                valid, problem = False, problem or exc.message
    return sch.SignatureCheck(
        id=sig.id,
        key_id=sig.key_id,
        kind=sig.kind,  # type: ignore[arg-type]
        signer=sig.signer,
        created_at=sig.created_at,
        valid=valid,
        problem=problem,
        files=bad,
        bundle=sig.bundle,
        statement=statement,
        statement_envelope=envelope,
    )


def check_version(s: Session, name: str, version: Any) -> sch.VersionSignatures:
    m, mv = registry.get_version(s, name, version)
    return sch.VersionSignatures(model_name=m.name, version=mv.version, signatures=checks_of(s, mv))


def checks_of(s: Session, mv: ModelVersion) -> list[sch.SignatureCheck]:
    sigs = repo.signatures_of(s, mv.id)
    keys = repo.keys_by_id(s, {x.key_id for x in sigs})
    files = _files(s, mv)
    return [_check(x, keys.get(x.key_id), files) for x in sigs]


def required_keys_missing(s: Session, mv: ModelVersion, key_ids: list[str]) -> list[str]:
    """The keys of ``key_ids`` without a valid signature on the version (empty: all signed)."""
    if not key_ids:
        return []
    valid = {c.key_id for c in checks_of(s, mv) if c.valid}
    return [k for k in key_ids if k not in valid]


def list_keys(s: Session, current: str | None) -> list[sch.SigningKey]:
    return [
        sch.SigningKey(
            key_id=k.key_id,
            public_pem=k.public_pem,
            owner=k.owner,
            kind=k.kind,  # type: ignore[arg-type]
            created_at=k.created_at,
            current=k.key_id == current,
        )
        for k in repo.list_keys(s)
    ]


def known_key(s: Session, key_id: str) -> bool:
    return repo.get_key(s, key_id) is not None


def valid_signers(s: Session, mv: ModelVersion) -> set[str]:
    """Key ids with a valid signature on the version, plus ``server`` when one of them is a
    server key (what a ``signed_by server`` gate asks, whichever key the server had then)."""
    checks = [c for c in checks_of(s, mv) if c.valid]
    out = {c.key_id for c in checks}
    if any(c.kind == "server" for c in checks):
        out.add("server")
    return out


def check_deployable(s: Session, m: RegisteredModel, mv: ModelVersion) -> None:
    """Deployments call this before loading a version: a version whose signatures no longer
    match its files (a manifest changed in the database, a key revoked) is not served.
    Versions from before signing have none and are served, with a warning in the log."""
    checks = checks_of(s, mv)
    if not checks:
        log.warning("serving %s version %s, which has no signature", m.name, mv.version)
        return
    if any(c.valid for c in checks):
        return
    files = sorted({f for c in checks for f in c.files})
    problems = "; ".join(f"{c.signer} ({c.key_id[:19]}…): {c.problem}" for c in checks)
    raise SignatureInvalid(
        f"Version {mv.version} of {m.name!r} cannot be served: no signature verifies. {problems}",
        {"model_name": m.name, "version": mv.version, "files": files},
    )
