"""Signs each new version inside the transaction that creates it (imported by the app
factory): a version and its server signature are committed together or not at all."""

from __future__ import annotations

from sqlalchemy.orm import Session

from podstack.server.events.service import Event, subscribe
from podstack.server.provenance import service


def _on_event(s: Session, event: Event) -> None:
    if event.type == "version.created":
        service.on_version_created(s, event.payload["model_name"], event.payload["version"])


subscribe(_on_event)
