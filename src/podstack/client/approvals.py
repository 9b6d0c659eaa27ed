"""SDK: approval workflows (requests, reviews, policies, reviewer groups).

A transition into a stage that the model's approval policy gates does not happen right away:
``transition_model_version_stage`` raises :class:`podstack.errors.ApprovalRequired`, whose
``request_id`` names the pending approval request. The transition is applied automatically
once enough reviewers approve::

    from podstack.errors import ApprovalRequired

    try:
        client.transition_model_version_stage("sentiment-classifier", 3, "Production")
    except ApprovalRequired as exc:
        print(exc.message)                      # who must approve, and the request id
        request = client.wait_for_approval(exc.request_id, timeout=3600)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from podstack.client.base import seg
from podstack.client.registry import RegistryAPI, VersionRef
from podstack.errors import ApprovalRequired
from podstack.schemas import approvals as sch
from podstack.schemas import registry as registry_sch


def _version_value(version: VersionRef) -> int | str:
    if isinstance(version, registry_sch.ModelVersion):
        return version.version
    if version is None:
        raise ValueError("version is required")
    return version


class ApprovalsAPI(RegistryAPI):
    # ------------------------------------------------------------------ transitions
    def transition_model_version_stage(
        self,
        model_name: str,
        version: VersionRef,
        stage: str,
        note: str | None = None,
        archive_existing: bool = False,
    ) -> registry_sch.ModelVersion:
        """Moves the version to None, Staging, Production or Archived (any case).
        ``archive_existing`` archives the versions already in that stage.

        Raises :class:`podstack.errors.ApprovalRequired` when the model's approval policy
        gates that stage: nothing moved, an approval request was opened (or one for the same
        change was already pending) and ``exc.request_id`` names it. The transition is
        applied automatically when it is approved (see ``wait_for_approval``)."""
        result = super().transition_model_version_stage(
            model_name, version, stage, note=note, archive_existing=archive_existing
        )
        pending = result.pending_request
        if pending is not None:
            details = {"request_id": pending.id, **pending.details}
            raise ApprovalRequired(pending.message, details)
        return result

    def request_stage_transition(
        self,
        model_name: str,
        version: VersionRef,
        stage: str,
        note: str | None = None,
        archive_existing: bool = False,
    ) -> sch.ApprovalRequestDetail:
        """Opens an approval request for a stage change (also for stages the policy does not
        gate, to ask for a review). Raises ``GateFailed`` if the version misses a gate."""
        body = {
            "model_name": model_name,
            "version": _version_value(version),
            "stage": stage,
            "note": note,
            "archive_existing": archive_existing,
        }
        return sch.ApprovalRequestDetail.model_validate(
            self._request("POST", "/approval-requests", json=body)
        )

    # ------------------------------------------------------------------ reviewing
    def get_approval_request(self, request_id: str) -> sch.ApprovalRequestDetail:
        """Request details: votes, comments, gate results (evaluated now while pending) and
        the version's metrics beside the current Production version's (``.metrics``)."""
        return sch.ApprovalRequestDetail.model_validate(
            self._request("GET", f"/approval-requests/{seg(request_id)}")
        )

    def list_approval_requests(
        self,
        status: str | Sequence[str] | None = None,
        model_name: str | None = None,
        requester: str | None = None,
        max_results: int | None = 1000,
    ) -> list[sch.ApprovalRequest]:
        """Newest first. ``status``: pending, approved, rejected, cancelled or stale (or a
        list of them)."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: dict[str, Any] = {
            "status": statuses or None,
            "model_name": model_name,
            "requester": requester,
            "limit": min(max_results, 1000) if max_results else None,
        }
        return [
            sch.ApprovalRequest.model_validate(r)
            for r in self._paginate("/approval-requests", "items", params, max_items=max_results)
        ]

    def approve_request(
        self, request_id: str, comment: str | None = None
    ) -> sch.ApprovalRequestDetail:
        """Approves as the calling user. When this approval completes the quorum the
        transition is applied at once (``status == "approved"``)."""
        return self._decide(request_id, "approve", comment)

    def reject_request(self, request_id: str, comment: str) -> sch.ApprovalRequestDetail:
        """Rejects (a comment saying why is required)."""
        return self._decide(request_id, "reject", comment)

    def cancel_request(
        self, request_id: str, comment: str | None = None
    ) -> sch.ApprovalRequestDetail:
        """The requester (or an admin) withdraws a pending request."""
        return self._decide(request_id, "cancel", comment)

    def _decide(
        self, request_id: str, action: str, comment: str | None
    ) -> sch.ApprovalRequestDetail:
        return sch.ApprovalRequestDetail.model_validate(
            self._request(
                "POST", f"/approval-requests/{seg(request_id)}/{action}", json={"comment": comment}
            )
        )

    def comment_on_request(self, request_id: str, body: str) -> sch.ApprovalComment:
        return sch.ApprovalComment.model_validate(
            self._request(
                "POST", f"/approval-requests/{seg(request_id)}/comments", json={"body": body}
            )
        )

    def wait_for_approval(
        self, request_id: str, timeout: float | None = None, poll_interval: float = 5.0
    ) -> sch.ApprovalRequestDetail:
        """Polls until the request is no longer pending and returns it (check ``.status``).
        Raises ``TimeoutError`` after ``timeout`` seconds (None waits forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            req = self.get_approval_request(request_id)
            if req.status != "pending":
                return req
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Approval request {request_id} is still pending.")
            time.sleep(poll_interval)

    # ------------------------------------------------------------------ policies
    def get_approval_policy(self, model_name: str | None = None) -> sch.ApprovalPolicy:
        """The policy that applies to ``model_name`` (its own, else the default), or the
        default policy when ``model_name`` is None."""
        path = (
            "/approval-policy"
            if model_name is None
            else f"/registered-models/{seg(model_name)}/approval-policy"
        )
        return sch.ApprovalPolicy.model_validate(self._request("GET", path))

    def set_approval_policy(
        self,
        model_name: str | None = None,
        *,
        gated_stages: Sequence[str] = (),
        reviewers: Sequence[str] = (),
        reviewer_groups: Sequence[str] = (),
        required_approvals: int = 1,
        gates: Sequence[str] = (),
        gated_aliases: Sequence[str] = (),
    ) -> sch.ApprovalPolicy:
        """Replaces a model's policy (admins), or the default one when ``model_name`` is None.

        ``gated_stages``: target stages that need approval, e.g. ``["Production"]``.
        ``reviewers`` / ``reviewer_groups``: who may approve (nobody designated: admins).
        ``required_approvals``: N approvals needed. ``gates``: metric conditions such as
        ``"accuracy >= 0.9"`` or ``"f1 > production"`` (beat the Production version); they
        read only metrics the requester cannot have written (an ended run's, or validation
        metrics logged by someone else). ``gated_aliases``: aliases (e.g. ``["champion"]``)
        whose set/move/delete opens an approval request instead of happening (raising
        :class:`podstack.errors.ApprovalPending`)."""
        body = {
            "gated_stages": list(gated_stages),
            "reviewers": list(reviewers),
            "reviewer_groups": list(reviewer_groups),
            "required_approvals": required_approvals,
            "gates": list(gates),
            "gated_aliases": list(gated_aliases),
        }
        path = (
            "/approval-policy"
            if model_name is None
            else f"/registered-models/{seg(model_name)}/approval-policy"
        )
        return sch.ApprovalPolicy.model_validate(self._request("PUT", path, json=body))

    def delete_approval_policy(self, model_name: str) -> sch.ApprovalPolicy:
        """Drops a model's own policy; returns the default that applies to it again."""
        return sch.ApprovalPolicy.model_validate(
            self._request("DELETE", f"/registered-models/{seg(model_name)}/approval-policy")
        )

    def list_approval_policies(self) -> list[sch.ApprovalPolicy]:
        """The default policy first, then every model's own policy."""
        page = self._request("GET", "/approval-policies")
        return [sch.ApprovalPolicy.model_validate(p) for p in page["items"]]

    # ------------------------------------------------------------------ groups
    def create_group(
        self, name: str, members: Sequence[str] = (), description: str | None = None
    ) -> sch.Group:
        body = {"name": name, "members": list(members), "description": description}
        return sch.Group.model_validate(self._request("POST", "/groups", json=body))

    def get_group(self, name: str) -> sch.Group:
        return sch.Group.model_validate(self._request("GET", f"/groups/{seg(name)}"))

    def list_groups(self) -> list[sch.Group]:
        return [sch.Group.model_validate(g) for g in self._request("GET", "/groups")["items"]]

    def delete_group(self, name: str) -> None:
        self._request("DELETE", f"/groups/{seg(name)}")

    def add_group_member(self, group: str, username: str) -> sch.Group:
        return sch.Group.model_validate(
            self._request("POST", f"/groups/{seg(group)}/members", json={"username": username})
        )

    def remove_group_member(self, group: str, username: str) -> sch.Group:
        return sch.Group.model_validate(
            self._request("DELETE", f"/groups/{seg(group)}/members/{seg(username)}")
        )
