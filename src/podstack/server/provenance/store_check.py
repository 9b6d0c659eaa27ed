"""``podstack verify-store``: every referenced blob re-hashed, every signature re-checked.

Reads through the store's own methods (local disk or S3 alike) with constant memory; reports
what is damaged and which model versions it breaks, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from podstack.errors import IntegrityError, NotFound
from podstack.server.db.session import Database
from podstack.server.provenance import repository as repo
from podstack.server.provenance import service
from podstack.server.registry import gc as registry_gc
from podstack.server.registry import service as registry
from podstack.server.registry.models import ModelVersion, RegisteredModel

BATCH = 200


@dataclass
class StoreReport:
    blobs_checked: int = 0
    corrupted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # (model, version, path, sha256) of version files whose blob is corrupted or missing
    damaged_files: list[tuple[str, int, str, str]] = field(default_factory=list)
    versions_checked: int = 0
    # (model, version, problem) of versions with signatures none of which verifies
    bad_signatures: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.corrupted or self.missing or self.bad_signatures)


def verify_store(
    db: Database, store: object, progress: Callable[[int, int], None] | None = None
) -> StoreReport:
    report = StoreReport()
    with db.session(readonly=True) as s:
        digests = sorted(registry_gc.referenced_digests(s))
    for i, digest in enumerate(digests):
        try:
            for _ in store.iter_blob(digest, verify=True):  # type: ignore[attr-defined]
                pass
        except IntegrityError:
            report.corrupted.append(digest)
        except NotFound:
            report.missing.append(digest)
        report.blobs_checked += 1
        if progress is not None:
            progress(i + 1, len(digests))
    with db.session(readonly=True) as s:
        report.damaged_files = registry.files_using_digests(s, [*report.corrupted, *report.missing])
        seen: set[int] = set()
        after = 0
        while batch := repo.all_signatures(s, after, BATCH):
            after = batch[-1].id
            for sig in batch:
                if sig.version_id in seen:
                    continue
                seen.add(sig.version_id)
                mv = s.get(ModelVersion, sig.version_id)
                m = s.get(RegisteredModel, mv.model_id) if mv else None
                if mv is None or m is None:
                    continue
                checks = service.checks_of(s, mv)
                report.versions_checked += 1
                if not any(c.valid for c in checks):
                    problem = "; ".join(c.problem or "invalid" for c in checks)
                    report.bad_signatures.append((m.name, mv.version, problem))
    return report
