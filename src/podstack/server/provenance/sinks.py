"""Signs each new version inside the transaction that creates it (imported by the app
factory): a version and its server signature are committed together or not at all. A registry
hook, not an event sink: the hook gets the model, version and files the registry already holds,
so signing reads none of them back."""

from __future__ import annotations

from podstack.server.provenance import service
from podstack.server.registry import hooks

hooks.register_version_created_hook(service.on_version_created)
