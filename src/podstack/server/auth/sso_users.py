"""What a verified single sign-on does to the user: created on first sign-in (linked by issuer
and subject), role and directory groups refreshed at every sign-in."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from podstack.errors import Conflict, Unauthenticated
from podstack.server.audit import service as audit
from podstack.server.auth import groups as group_rules
from podstack.server.auth import service
from podstack.server.auth.models import User, UserIdentity
from podstack.server.auth.oidc_config import OidcConfig, role_for
from podstack.server.db.base import utcnow

log = logging.getLogger("podstack.server.auth.oidc")

# ---------------------------------------------------------------- the user


SSO_ACTOR = "sso"


def sign_in(session: Session, config: OidcConfig, claims: Mapping[str, Any]) -> User:
    """The user a verified set of claims signs in as: found by (issuer, subject), else created
    with the mapped role. Role, groups, email and display name are refreshed from the claims
    every time, so the provider stays the source of truth."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise Unauthenticated("The ID token has no usable 'sub' claim; the sign-in was refused.")
    groups = group_rules.groups_from_claim(claims.get(config.groups_claim), config.groups_claim)
    role = role_for(config, groups)
    identity = session.scalar(
        select(UserIdentity).where(
            UserIdentity.issuer == config.issuer, UserIdentity.subject == subject
        )
    )
    if identity is None:
        user = _first_sign_in(session, config, claims, subject, role)
        identity = UserIdentity(
            user_id=user.id, issuer=config.issuer, subject=subject, created_at=utcnow()
        )
        session.add(identity)
        session.flush()
        audit.record(
            session,
            SSO_ACTOR,
            "user.link_identity",
            "user",
            user.username,
            None,
            {"issuer": config.issuer, "subject": subject},
        )
    else:
        user = session.get(User, identity.user_id)  # type: ignore[assignment]
        if user.disabled:
            raise Unauthenticated(
                f"The Podstack user {user.username!r} is disabled; ask an admin to enable it."
            )
        if user.role != role:
            try:
                service.set_role(session, SSO_ACTOR, user.username, role)
            except Conflict:
                # The last active admin keeps the role rather than locking everyone out;
                # the local admin account is the way to fix the provider's mapping.
                log.warning("single sign-on: %s stays admin (the last active one)", user.username)
        service.update_user(
            session,
            SSO_ACTOR,
            user.username,
            {
                "email": _str_claim(claims, "email"),
                "display_name": _str_claim(claims, "name"),
            },
        )
    identity.last_sign_in_at = utcnow()
    group_rules.replace_memberships(session, SSO_ACTOR, user, groups)
    return user


def _str_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if name == "email":
        try:
            return service.validate_email(value)
        except Exception:
            return None  # an odd address at the provider must not block the sign-in
    return value[:200] or None


def _first_sign_in(
    session: Session, config: OidcConfig, claims: Mapping[str, Any], subject: str, role: str
) -> User:
    raw = claims.get(config.username_claim)
    if not isinstance(raw, str) or not raw.strip():
        raise Unauthenticated(
            f"The identity provider sent no {config.username_claim!r} claim to name your "
            "Podstack user. Ask an admin to set PODSTACK_OIDC_USERNAME_CLAIM to a claim the "
            "provider sends (e.g. preferred_username, or email's name part via the provider's "
            "claim mapping)."
        )
    username = raw.strip()
    try:
        service.validate_username(username)
    except Exception:
        raise Unauthenticated(
            f"The {config.username_claim!r} claim {username[:100]!r} is not a valid Podstack "
            "username (1-64 letters, digits, '.', '_' or '-'). Ask an admin to point "
            "PODSTACK_OIDC_USERNAME_CLAIM at a claim that is."
        ) from None
    existing = session.scalar(select(User).where(User.username == username))
    if existing is not None:
        # Never take over an account that single sign-on did not create: the provider may let
        # people choose their preferred_username (e.g. "admin").
        raise Unauthenticated(
            f"A Podstack user named {username!r} already exists and is not linked to this "
            "identity provider account, so single sign-on will not sign in as it. Sign in "
            "with that user's password or API token, or ask an admin to resolve the clash."
        )
    return service.create_user(
        session,
        SSO_ACTOR,
        username,
        role=role,
        email=_str_claim(claims, "email"),
        display_name=_str_claim(claims, "name"),
    )


def is_sso_user(session: Session, user_id: int) -> bool:
    return (
        session.scalar(select(UserIdentity.id).where(UserIdentity.user_id == user_id)) is not None
    )
