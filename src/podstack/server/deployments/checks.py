"""What may be served where: endpoint names, resolving a version or alias, the trust rules
for pickles, and the production-endpoint rule (a version in Production or approved for it;
anything else opens an approval request raised as ``errors.ApprovalPending``).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from podstack.errors import PermissionDenied, ValidationFailed
from podstack.server.auth.principal import LOCAL_ADMIN, Principal
from podstack.server.deployments import targets as tg
from podstack.server.registry import service as registry
from podstack.server.registry.models import ModelVersion, RegisteredModel
from podstack.serving import formats as fmt

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


NAME_MAX = 45  # KServe derives longer names (<name>-predictor-...) that must fit 63 chars


def validate_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise ValidationFailed(
            f"Invalid endpoint name {name!r}: use 1-{NAME_MAX} lowercase letters, digits and "
            "'-', starting with a letter and ending with a letter or digit (it becomes a URL "
            "path segment and a Kubernetes resource name), e.g. 'sentiment-api'.",
            {"endpoint_name": name},
        )


def resolve(
    s: Session, model_name: str, version: int | None, alias: str | None
) -> tuple[RegisteredModel, ModelVersion]:
    if version is not None and alias is not None:
        raise ValidationFailed(
            "Give either version (pin a version) or alias (follow an alias), not both.",
            {"version": version, "alias": alias},
        )
    if alias is not None:
        return registry.version_by_alias(s, model_name, alias)
    if version is None:
        return registry.version_by_alias(s, model_name, "latest")
    return registry.get_version(s, model_name, version)


def check_trust(
    target: tg.Target, servable: fmt.Servable, m: RegisteredModel, mv: ModelVersion
) -> None:
    if servable.unsafe and not target.trusted:
        raise ValidationFailed(
            f"Version {mv.version} of {m.name!r} is a scikit-learn pickle ({servable.data_path!r})"
            ". Loading a pickle executes code from the file, so target "
            f"{target.name!r} refuses it: trusted formats are off. An admin can enable them "
            f"(PUT /api/v1/deployment-targets/{target.name} with config "
            '{"trusted_formats": true}), or log the model as ONNX '
            "(run.log_model(model, 'model', input_example=X) converts scikit-learn with skl2onnx).",
            {
                "model_name": m.name,
                "version": mv.version,
                "format": servable.format,
                "reason": "untrusted_pickle",
                "target": target.name,
            },
        )


def is_admin(s: Session, actor: str, principal: Principal | None) -> bool:
    if principal is not None:
        return principal.has_role("admin")
    # Paths without a principal (alias moves reaching deployments through the event bus)
    # look the actor up; the embedded/no-auth local admin has no user row.
    from sqlalchemy import select

    from podstack.server.auth.models import User

    user = s.scalar(select(User).where(User.username == actor))
    if user is None:
        return actor == LOCAL_ADMIN.username
    return user.role == "admin" and not user.disabled


def check_pickle(
    s: Session,
    actor: str,
    principal: Principal | None,
    target: tg.Target,
    servable: fmt.Servable,
    endpoint: str,
    m: RegisteredModel,
    mv: ModelVersion,
    approved_request: str | None,
) -> None:
    """A trusted target runs pickles, and loading a pickle runs its code on the host: only an
    admin, or a version approved for this endpoint, may deploy one there."""
    if not (servable.unsafe and target.trusted) or approved_request is not None:
        return
    if is_admin(s, actor, principal):
        return
    from podstack.server.approvals import service as approvals

    if approvals.approved_for(s, endpoint, mv.id) is not None:
        return
    raise PermissionDenied(
        f"Version {mv.version} of {m.name!r} is a scikit-learn pickle ({servable.data_path!r}). "
        f"Target {target.name!r} trusts pickles, but loading one runs code from the file on the "
        "host, so only an admin may deploy it (or a version approved for this endpoint through "
        "a production endpoint's approval request). Ask an admin to deploy it, or log the "
        "model as ONNX (run.log_model(model, 'model', input_example=X)).",
        {
            "model_name": m.name,
            "version": mv.version,
            "format": servable.format,
            "reason": "pickle_needs_admin",
            "target": target.name,
            "endpoint_name": endpoint,
        },
    )


def require_servable(
    s: Session,
    actor: str,
    endpoint: str,
    m: RegisteredModel,
    mv: ModelVersion,
    action: dict[str, Any],
    approved_request: str | None,
) -> None:
    """A production endpoint serves only versions in Production or approved for it; any
    other version opens an approval request (raised as ApprovalPending)."""
    if approved_request is not None or mv.stage == "Production":
        return
    from podstack.server.approvals import service as approvals

    if approvals.approved_for(s, endpoint, mv.id) is not None:
        return
    raise approvals.request_change(
        s,
        actor,
        kind=approvals.DEPLOYMENT,
        m=m,
        mv=mv,
        subject=approvals.deployment_subject(endpoint),
        action={"endpoint_name": endpoint, "model_name": m.name, "version": mv.version, **action},
    )
