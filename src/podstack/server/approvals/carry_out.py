"""What an approved request that is not a stage change does: an ``alias`` request makes its
alias change, a ``deployment`` request its deployment change, each as the requester's and
citing the request (stage requests are applied by ``deciding`` through the registry).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import Conflict
from podstack.server.approvals.models import ApprovalRequest
from podstack.server.approvals.requests import ALIAS, DEPLOYMENT
from podstack.server.registry import aliases


def carry_out(s: Session, req: ApprovalRequest, state: Any) -> None:
    """Makes the approved deployment/alias change, as the requester's, citing the request."""
    if req.kind == ALIAS:
        aliases.carry_out(s, req.requester, req.model_name, req.action or {}, req.id)
    elif req.kind == DEPLOYMENT:
        # Imported here: the deployments service imports this package.
        from podstack.server.deployments import service as deployments

        if state is None:
            raise Conflict(
                f"Request {req.id} changes a deployment and must be approved through the "
                "server (REST, SDK or UI).",
                {"request_id": req.id},
            )
        deployments.carry_out(s, req.requester, req.action or {}, req.id, state)
