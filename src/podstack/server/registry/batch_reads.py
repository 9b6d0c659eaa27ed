"""What a page of models or versions shows, read in a fixed number of queries: for adapters
outside the registry (the MLflow API's views), which may not reach the repository itself."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from podstack.server.registry import repository as repo
from podstack.server.registry.models import ModelVersion


def version_tags_and_aliases(
    s: Session, version_ids: Sequence[int]
) -> tuple[dict[int, dict[str, str]], dict[int, list[str]]]:
    """Each version's key-value tags and alias names (one query)."""
    tags, _metrics, aliases = repo.version_extras(s, version_ids)
    return tags, aliases


def model_aliases(s: Session, model_ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
    """Each model's aliases as (alias, version number), by alias name (two queries)."""
    rows = repo.aliases_of_models(s, model_ids)
    versions: dict[int, ModelVersion] = repo.versions_by_ids(
        s, [a.version_id for found in rows.values() for a in found]
    )
    return {
        mid: [(a.alias, versions[a.version_id].version) for a in found if a.version_id in versions]
        for mid, found in rows.items()
    }
