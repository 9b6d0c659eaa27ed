"""Key-value tags on registered models (MLflow's registered-model tags), beside labels.

Our models had labels only (plain strings: the seed's ``register_model(tags=[...])``);
MLflow's registered models carry ``key -> value`` tags. Both are kept, each in its own table,
and the MLflow API shows the union: every key-value tag, plus each label as a tag whose value
is ``""`` (unless a key-value tag of that name exists). Setting a tag through MLflow writes a
key-value tag; deleting one deletes the key-value tag, or the label when only a label has that
name, so what the MLflow client sees is what it can remove.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from podstack.errors import NotFound, ValidationFailed
from podstack.server.audit import service as audit
from podstack.server.db.base import utcnow
from podstack.server.permissions import service as permissions
from podstack.server.registry import model_pages as pages
from podstack.server.registry import repository as repo
from podstack.server.registry.lookup import get_model
from podstack.server.registry.models import RegisteredModel

MAX_KEY = 250
# MLflow's own limit for registered-model tag values.
MAX_VALUE = 5000


def validate_tag(key: object, value: object) -> tuple[str, str]:
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        raise ValidationFailed(
            f"Invalid tag key {str(key)[:100]!r}: a tag key is 1-{MAX_KEY} characters.",
            {"key": str(key)[:100]},
        )
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise ValidationFailed(
            f"Invalid value for tag {key!r}: a tag value is a string of at most {MAX_VALUE} "
            "characters.",
            {"key": key},
        )
    return key, value


def tags_of(s: Session, model_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """Each model's key-value tags, with its labels as tags of value ``""`` (a key-value tag
    of the same name wins)."""
    kv = repo.model_tags_of(s, model_ids)
    labels = pages.labels_of(s, model_ids)
    return {m: {lab: "" for lab in labels[m]} | kv[m] for m in model_ids}


def set_model_tag(s: Session, actor: str, name: str, key: str, value: str) -> RegisteredModel:
    key, value = validate_tag(key, value)
    m = get_model(s, name)
    permissions.require_model(s, m, permissions.EDIT)
    old = repo.model_tags_of(s, [m.id])[m.id].get(key)
    repo.upsert_model_tag(s, m.id, key, value)
    m.updated_at = utcnow()
    audit.record(
        s,
        actor,
        "model.set_tag",
        "registered_model",
        m.name,
        None if old is None else {key: old},
        {key: value},
    )
    return m


def delete_model_tag(s: Session, actor: str, name: str, key: str) -> RegisteredModel:
    m = get_model(s, name)
    permissions.require_model(s, m, permissions.EDIT)
    old = repo.model_tags_of(s, [m.id])[m.id].get(key)
    if old is not None:
        repo.delete_model_tag(s, m.id, key)
        before = {key: old}
    else:
        labels = pages.labels_of(s, [m.id])[m.id]
        if key not in labels:
            raise NotFound(
                f"Registered model {name!r} has no tag {key!r}.",
                {"model_name": name, "key": key},
            )
        repo.replace_labels(s, m.id, [lab for lab in labels if lab != key])
        before = {key: ""}
    m.updated_at = utcnow()
    audit.record(s, actor, "model.delete_tag", "registered_model", m.name, before, None)
    return m
