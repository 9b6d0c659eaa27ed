"""Single sign-on settings: which provider, which claims, how IdP groups map to roles
(checked at start, so a bad configuration stops the server naming the setting)."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from podstack.server.auth.principal import ROLES

log = logging.getLogger("podstack.server.auth.oidc")

DEFAULT_SCOPES = "openid profile email groups"
CALLBACK_PATH = "/login/oidc/callback"
# Clock difference tolerated between this server and the provider for exp/iat.
LEEWAY_SECONDS = 60
# The provider's metadata and keys are fetched again after this long (keys also on an
# unknown key id, so a key rotation is picked up at once).
METADATA_TTL_SECONDS = 3600
# A sign-in started but not finished within this long must be started again.
PENDING_TTL_SECONDS = 600
_RANK = {r: i for i, r in enumerate(ROLES)}
_LOOPBACK_NAMES = frozenset({"localhost"})


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)  # never in a repr, a log line or an error
    scopes: tuple[str, ...]
    username_claim: str
    groups_claim: str
    default_role: str
    group_roles: tuple[tuple[str, str], ...]
    provider_name: str


def parse_group_roles(value: str | None) -> dict[str, str]:
    """``"ml-admins=admin,ml=editor"`` -> {group: role}; raises ValueError naming the entry."""
    out: dict[str, str] = {}
    for raw in (value or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        group, sep, role = entry.rpartition("=")
        group, role = group.strip(), role.strip().lower()
        if not sep or not group or role not in ROLES:
            raise ValueError(
                f"PODSTACK_OIDC_GROUP_ROLES: {entry!r} is not <group>=<role> with a role of "
                f"{', '.join(ROLES)} (e.g. ml-admins=admin,ml=editor)."
            )
        out[group] = role
    return out


def _issuer_problem(issuer: str) -> str | None:
    try:
        url = httpx.URL(issuer)
    except (httpx.InvalidURL, ValueError):
        return "it is not a URL"
    if url.query or url.fragment or not url.host:
        return "an issuer is an https:// URL without query or fragment"
    if url.scheme == "https":
        return None
    if url.scheme == "http" and _is_loopback(url.host):
        return None  # a provider on the same machine (development, tests)
    return "an issuer must use https:// (http:// only on a loopback address)"


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_settings(settings: Any) -> None:
    """Raises ValueError for an incomplete or wrong single sign-on configuration, so the
    server stops at start rather than at the first sign-in (``Settings`` calls this)."""
    trio = {
        "PODSTACK_OIDC_ISSUER": settings.oidc_issuer,
        "PODSTACK_OIDC_CLIENT_ID": settings.oidc_client_id,
        "PODSTACK_OIDC_CLIENT_SECRET": settings.oidc_client_secret,
    }
    missing = [k for k, v in trio.items() if not v]
    if len(missing) == 3:
        return
    if missing:
        raise ValueError(
            f"Single sign-on needs {', '.join(trio)}; {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set."
        )
    problem = _issuer_problem(settings.oidc_issuer)
    if problem:
        raise ValueError(f"PODSTACK_OIDC_ISSUER={settings.oidc_issuer!r}: {problem}.")
    scopes = settings.oidc_scopes.split()
    if "openid" not in scopes:
        raise ValueError(
            f"PODSTACK_OIDC_SCOPES={settings.oidc_scopes!r} must include 'openid' "
            f"(default: {DEFAULT_SCOPES!r})."
        )
    if settings.oidc_default_role.lower() not in ROLES:
        raise ValueError(
            f"PODSTACK_OIDC_DEFAULT_ROLE={settings.oidc_default_role!r}: use one of "
            f"{', '.join(ROLES)}."
        )
    parse_group_roles(settings.oidc_group_roles)


def config_of(settings: Any) -> OidcConfig | None:
    """The single sign-on configuration, or None when it is off."""
    if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
        return None
    secret = settings.oidc_client_secret
    issuer = settings.oidc_issuer.rstrip("/")
    host = httpx.URL(issuer).host
    return OidcConfig(
        issuer=issuer,
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret,
        scopes=tuple(settings.oidc_scopes.split()),
        username_claim=settings.oidc_username_claim,
        groups_claim=settings.oidc_groups_claim,
        default_role=settings.oidc_default_role.lower(),
        group_roles=tuple(parse_group_roles(settings.oidc_group_roles).items()),
        provider_name=settings.oidc_provider_name or host,
    )


def role_for(config: OidcConfig, groups: list[str]) -> str:
    """The default role, raised by any mapped group the user is in: the highest wins."""
    role = config.default_role
    for group, mapped in config.group_roles:
        if group in groups and _RANK[mapped] > _RANK[role]:
            role = mapped
    return role
