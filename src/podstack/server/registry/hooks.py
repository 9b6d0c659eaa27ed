"""Extension points other capabilities register into (see ``service`` for when each runs).

Kept apart from ``service`` so a capability can register at import time without importing
the whole registry service (and so the service can re-export them without import cycles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from podstack.schemas import registry as sch
from podstack.server.registry.models import ModelVersion, RegisteredModel


@dataclass(frozen=True)
class TransitionProposal:
    model_name: str
    version: int
    from_stage: str
    to_stage: str
    note: str | None
    archive_existing: bool
    actor: str


@dataclass(frozen=True)
class AliasProposal:
    """An alias about to be set/moved (``version`` the new target), rolled back or deleted
    (``version`` None, ``previous_version`` the one it points at)."""

    model_name: str
    alias: str
    operation: str  # set | rollback | delete
    version: int | None
    previous_version: int | None
    actor: str


@dataclass(frozen=True)
class Interception:
    """A gate took over the transition (e.g. created an approval request)."""

    request_id: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransitionOutcome:
    version: ModelVersion
    applied: bool
    interception: Interception | None = None


TransitionGate = Callable[[Session, TransitionProposal], Interception | None]
DeleteGuard = Callable[[Session, RegisteredModel, list[ModelVersion]], None]
AliasDeleteGuard = Callable[[Session, RegisteredModel, str], None]
# Raises (e.g. errors.ApprovalPending after opening an approval request) to stop the change.
AliasGate = Callable[[Session, AliasProposal], None]
# Runs in the transaction that creates a version, with its files as (path, size, sha256) in path
# order: what the creating code already holds, so a hook (the server's signature) reads nothing
# back. Raising rolls the version back.
VersionCreatedHook = Callable[
    [Session, RegisteredModel, ModelVersion, list[tuple[str, int, str]]], None
]
LineageContributor = Callable[
    [Session, RegisteredModel, ModelVersion],
    tuple[list[sch.LineageNode], list[sch.LineageEdge]] | None,
]

TRANSITION_GATES: list[TransitionGate] = []
DELETE_GUARDS: list[DeleteGuard] = []
ALIAS_DELETE_GUARDS: list[AliasDeleteGuard] = []
ALIAS_GATES: list[AliasGate] = []
LINEAGE_CONTRIBUTORS: list[LineageContributor] = []
VERSION_CREATED_HOOKS: list[VersionCreatedHook] = []


def _register(hooks: list[Any], fn: Any) -> Any:
    if fn not in hooks:  # re-imports (tests, reloads) must not double-register
        hooks.append(fn)
    return fn


def register_transition_gate(fn: TransitionGate) -> TransitionGate:
    return _register(TRANSITION_GATES, fn)


def register_delete_guard(fn: DeleteGuard) -> DeleteGuard:
    return _register(DELETE_GUARDS, fn)


def register_alias_delete_guard(fn: AliasDeleteGuard) -> AliasDeleteGuard:
    return _register(ALIAS_DELETE_GUARDS, fn)


def register_alias_gate(fn: AliasGate) -> AliasGate:
    return _register(ALIAS_GATES, fn)


def register_lineage_contributor(fn: LineageContributor) -> LineageContributor:
    return _register(LINEAGE_CONTRIBUTORS, fn)


def register_version_created_hook(fn: VersionCreatedHook) -> VersionCreatedHook:
    return _register(VERSION_CREATED_HOOKS, fn)
