"""Registry rules enforced in the service itself, whatever the caller."""

from __future__ import annotations

import pytest

from podstack.errors import NotFound
from podstack.server.db.session import Database


def test_service_enforces_label_rule_for_every_caller(db: Database) -> None:
    """Web forms and the CLI reach the service without the REST schema: same rule, same 422,
    nothing written."""
    from podstack.errors import ValidationFailed
    from podstack.server.registry import service

    with pytest.raises(ValidationFailed, match="Invalid label"), db.session() as s:
        service.register_model(s, "test", "labelled", None, ["ok", "<script>"])
    with db.session(readonly=True) as s, pytest.raises(NotFound):
        service.get_model(s, "labelled")
    with db.session() as s:
        m = service.register_model(s, "test", "labelled", None, ["nlp", "nlp", "prod"])
        assert m.name == "labelled"
    with db.session(readonly=True) as s:
        assert service.get_model(s, "labelled") is not None
