"""Approval request rules, each in one place.

- A transition into a stage the model's policy gates is taken over by ``transition_gate``
  (registered with the registry in ``sinks.py``): it opens a request instead of applying.
  ``create_request`` opens one explicitly (also for stages that are not gated).
- Opening checks the policy's metric gates (a failing gate refuses with GATE_FAILED) and that
  enough reviewers other than the requester exist to ever reach the quorum.
- Nobody approves their own request; only eligible reviewers decide; a rejection needs a
  comment; the requester (or an admin) may cancel.
- When approvals reach the quorum the transition is applied in the same transaction through
  the registry's ``apply_transition`` with the request id.
- A pending request goes stale when its version changes stage or is deleted (``sinks.py``
  reacts to those events) or when its gates fail at approval time (``refresh``).

Beyond stage labels, requests also govern what is *served* (kinds ``deployment`` and
``alias``; ``subject`` names the endpoint or alias, ``action`` the change):

- a production endpoint (``deployments.production``) serves only versions in Production or
  approved for it: deploying or rolling it to another version opens a ``deployment`` request
  (``request_change``, called by the deployments service);
- moving/deleting an alias the policy gates (``gated_aliases``), or moving an alias a
  production endpoint follows, opens an ``alias`` request (``alias_gate``, registered with
  the registry);
- either raises ``errors.ApprovalPending`` (409, ``request_id`` in details; the request is
  committed although the change is refused) and, once approved, the change is carried out in
  the approving transaction as the requester's, citing the request.

As for gated stages, these rules apply to admins too (an admin may change the policy or
unmark a production endpoint, both audited).

Where each rule lives: ``requests`` (the record, reading, checks, staleness, what an approved
request lets an endpoint serve), ``opening``, ``deciding`` and ``carry_out`` (what an approved
non-stage request does). This module is the entry point: it re-exports what callers use.
"""

from __future__ import annotations

from podstack.server.approvals.carry_out import carry_out
from podstack.server.approvals.deciding import add_comment, approve, cancel, reject
from podstack.server.approvals.opening import (
    alias_gate,
    create_request,
    interception,
    request_change,
    transition_gate,
)
from podstack.server.approvals.requests import (
    ALIAS,
    DEPLOYMENT,
    PRODUCTION,
    STAGE,
    STATUSES,
    SYSTEM,
    Check,
    alias_subject,
    approved_for,
    deployment_subject,
    evaluate,
    get_request,
    link,
    list_requests,
    mark_stale,
    on_event,
    pending_count,
    refresh,
    reviewers_of,
    version_row,
)

__all__ = [
    "ALIAS",
    "DEPLOYMENT",
    "PRODUCTION",
    "STAGE",
    "STATUSES",
    "SYSTEM",
    "Check",
    "add_comment",
    "alias_gate",
    "alias_subject",
    "approve",
    "approved_for",
    "cancel",
    "carry_out",
    "create_request",
    "deployment_subject",
    "evaluate",
    "get_request",
    "interception",
    "link",
    "list_requests",
    "mark_stale",
    "on_event",
    "pending_count",
    "refresh",
    "reject",
    "request_change",
    "reviewers_of",
    "transition_gate",
    "version_row",
]
