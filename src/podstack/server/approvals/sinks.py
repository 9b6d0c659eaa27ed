"""Plugs approvals into the registry and the event bus (imported by the app factory):

- the transition gate turns transitions into gated stages into approval requests;
- the alias gate turns moves of gated aliases (and of aliases production endpoints follow)
  into approval requests;
- the event sink marks pending requests stale when their version changes stage or is
  deleted (inside the same transaction as that change).
"""

from __future__ import annotations

from podstack.server.approvals import opening, requests
from podstack.server.events.service import subscribe
from podstack.server.registry.hooks import register_alias_gate
from podstack.server.registry.service import register_transition_gate

register_transition_gate(opening.transition_gate)
register_alias_gate(opening.alias_gate)
subscribe(requests.on_event)
