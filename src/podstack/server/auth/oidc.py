"""Single sign-on with OpenID Connect: the authorization-code flow with PKCE, and what a
verified sign-in does to the user (created on first sign-in, role and groups refreshed at
every sign-in).

The protocol pieces come from libraries, never by hand: Authlib's PKCE helper and its OpenID
``CodeIDToken`` claims rules (iss, aud, exp, iat, nonce, azp, at_hash), and joserfc (Authlib's
JOSE library) for the ID token's signature against the provider's published keys.

Every request to the provider (discovery, keys, token, userinfo) goes through the egress
check (``egress.EgressClient``). The issuer's own host is allowed implicitly for this client
only: the admin named it in ``PODSTACK_OIDC_ISSUER``, so an in-house provider on a private
address works without also listing it in ``PODSTACK_OUTBOUND_ALLOW``. Endpoints that discovery
names on *other* hosts get the ordinary rules (public addresses, or the allow-list).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from podstack.errors import BadRequest, ServiceUnavailable, Unauthenticated
from podstack.server import egress
from podstack.server.auth.oidc_config import (
    CALLBACK_PATH,
    DEFAULT_SCOPES,
    LEEWAY_SECONDS,
    METADATA_TTL_SECONDS,
    PENDING_TTL_SECONDS,
    OidcConfig,
    check_settings,
    config_of,
    parse_group_roles,
    role_for,
)
from podstack.server.auth.sso_users import SSO_ACTOR, is_sso_user, sign_in

log = logging.getLogger(__name__)

# Re-exported: the settings check, the config and the user rules live in oidc_config.py and
# sso_users.py; callers keep one entry point.
__all__ = [
    "CALLBACK_PATH",
    "DEFAULT_SCOPES",
    "SSO_ACTOR",
    "OidcClient",
    "OidcConfig",
    "Pending",
    "check_settings",
    "client_for",
    "config_of",
    "is_sso_user",
    "parse_group_roles",
    "role_for",
    "sign_in",
]


# ---------------------------------------------------------------- the protocol


@dataclass(frozen=True)
class Pending:
    """What the browser's (signed) session remembers between leaving for the provider and
    coming back: bound to that browser, used once."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_url: str
    started: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_dict(cls, data: Any) -> Pending | None:
        try:
            return cls(**data)
        except TypeError:
            return None


def _with_issuer_host(allow: egress.AllowList, issuer: str) -> egress.AllowList:
    """The admin's allow-list plus exactly the issuer's host (see the module docstring).
    A cloud metadata host or address is never added implicitly."""
    host = httpx.URL(issuer).host.lower().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host in egress.METADATA_HOSTS:
            return allow
        return egress.AllowList(allow.networks, allow.hosts | {host}, allow.suffixes)
    if ip in egress.METADATA_ADDRESSES:
        return allow
    return egress.AllowList(
        (*allow.networks, ipaddress.ip_network(ip)), allow.hosts, allow.suffixes
    )


class OidcClient:
    """One per server (``client_for``): caches the provider's metadata and keys."""

    def __init__(
        self,
        config: OidcConfig,
        allow: egress.AllowList,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self._http = egress.EgressClient(
            _with_issuer_host(allow, config.issuer), timeout=10.0, transport=transport
        )
        self._lock = threading.Lock()
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, dict[str, Any]] | None = None

    # -- talking to the provider

    def _get_json(self, url: str, what: str, headers: Mapping[str, str] | None = None) -> Any:
        answer = self._send("GET", url, what, headers=headers)
        if answer.status_code != 200:
            raise ServiceUnavailable(
                f"Single sign-on is unavailable: the identity provider's {what} "
                f"({egress.describe_answer('GET', url, answer)}). Try again later or ask an "
                "admin to check PODSTACK_OIDC_ISSUER.",
                {"reason": "oidc_provider"},
            )
        return _json(answer, what)

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return self._http.request(method, url, content=content, headers=headers)
        except egress.Refused as exc:
            raise ServiceUnavailable(
                egress.refusal_message(f"The identity provider's {what}", url, exc.reason),
                {"reason": "oidc_egress"},
            ) from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"Single sign-on is unavailable: the identity provider's {what} at "
                f"{egress.display_url(url)} could not be reached ({type(exc).__name__}). Try "
                "again later.",
                {"reason": "oidc_provider"},
            ) from None

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            cached = self._metadata
        if cached and cached[0] > time.monotonic():
            return cached[1]
        url = self.config.issuer + "/.well-known/openid-configuration"
        doc = self._get_json(url, "discovery document")
        # OpenID Connect Discovery 1.0 §4.3: the document must name exactly the issuer it was
        # fetched for, or tokens from another issuer could be accepted.
        if not isinstance(doc, dict) or str(doc.get("issuer", "")).rstrip("/") != (
            self.config.issuer
        ):
            raise ServiceUnavailable(
                f"Single sign-on is misconfigured: the discovery document at {url} names "
                f"issuer {str(doc.get('issuer') if isinstance(doc, dict) else None)[:200]!r}, "
                f"not {self.config.issuer!r}. Set PODSTACK_OIDC_ISSUER to the provider's "
                "exact issuer.",
                {"reason": "oidc_issuer_mismatch"},
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str):
                raise ServiceUnavailable(
                    f"Single sign-on is misconfigured: the discovery document at {url} has no "
                    f"{key}.",
                    {"reason": "oidc_metadata"},
                )
        with self._lock:
            self._metadata = (time.monotonic() + METADATA_TTL_SECONDS, doc)
        return doc

    def jwks(self, *, force: bool = False) -> dict[str, Any]:
        with self._lock:
            cached = self._jwks
        if cached and cached[0] > time.monotonic() and not force:
            return cached[1]
        keys = self._get_json(self.metadata()["jwks_uri"], "signing keys (jwks_uri)")
        if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
            raise ServiceUnavailable(
                "Single sign-on is unavailable: the identity provider's jwks_uri did not "
                "answer a JSON Web Key Set.",
                {"reason": "oidc_metadata"},
            )
        with self._lock:
            self._jwks = (time.monotonic() + METADATA_TTL_SECONDS, keys)
        return keys

    # -- the flow

    def begin(self, redirect_uri: str, next_url: str) -> tuple[str, Pending]:
        """The provider's authorization URL to send the browser to, and what to remember."""
        pending = Pending(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),  # 64 characters (RFC 7636: 43-128)
            redirect_uri=redirect_uri,
            next_url=next_url,
            started=int(time.time()),
        )
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        endpoint = self.metadata()["authorization_endpoint"]
        sep = "&" if "?" in endpoint else "?"
        return endpoint + sep + urlencode(params, quote_via=quote), pending

    def finish(self, pending: Pending | None, params: Mapping[str, str]) -> dict[str, Any]:
        """Checks the provider's answer at the callback and returns the verified claims."""
        if pending is None:
            raise BadRequest(
                "This sign-in was not started from this browser, or it already finished. "
                "Start again with the single sign-on button.",
                {"reason": "oidc_no_pending"},
            )
        if time.time() - pending.started > PENDING_TTL_SECONDS:
            raise BadRequest(
                f"This sign-in took longer than {PENDING_TTL_SECONDS // 60} minutes; start "
                "again with the single sign-on button.",
                {"reason": "oidc_stale"},
            )
        if not hmac.compare_digest(params.get("state", ""), pending.state):
            raise BadRequest(
                "The sign-in answer does not match the sign-in this browser started (wrong "
                "state), so it was refused. Start again with the single sign-on button.",
                {"reason": "oidc_state"},
            )
        # RFC 9207: a provider that names itself in the answer must be the configured one
        # (an answer relayed from another provider the user also uses is refused).
        iss = params.get("iss")
        if iss is not None and iss.rstrip("/") != self.config.issuer:
            raise Unauthenticated(
                f"The sign-in answer comes from issuer {iss[:200]!r}, not the configured "
                f"{self.config.issuer!r}; it was refused.",
            )
        if params.get("error"):
            described = params.get("error_description", "")[:300]
            raise Unauthenticated(
                f"The identity provider did not sign you in: {params['error'][:100]}"
                + (f" ({described})" if described else "")
                + ".",
            )
        code = params.get("code")
        if not code:
            raise BadRequest(
                "The sign-in answer has no authorization code. Start again with the single "
                "sign-on button.",
                {"reason": "oidc_no_code"},
            )
        tokens = self._exchange(code, pending)
        claims = self.verify_id_token(
            tokens.get("id_token"), pending.nonce, tokens.get("access_token")
        )
        return self._with_userinfo(claims, tokens.get("access_token"))

    def _exchange(self, code: str, pending: Pending) -> dict[str, Any]:
        meta = self.metadata()
        body = urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": pending.redirect_uri,
                "code_verifier": pending.code_verifier,
            }
        ).encode()
        # client_secret_basic (RFC 6749 §2.3.1: id and secret form-encoded, then Basic).
        basic = base64.b64encode(
            f"{quote(self.config.client_id, safe='')}:"
            f"{quote(self.config.client_secret, safe='')}".encode()
        ).decode()
        answer = self._send(
            "POST",
            meta["token_endpoint"],
            "token endpoint",
            content=body,
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        data = _json(answer, "token endpoint") if answer.content else {}
        if answer.status_code != 200:
            error = str(data.get("error", "")) if isinstance(data, dict) else ""
            raise Unauthenticated(
                "The identity provider refused to complete the sign-in"
                + (f" ({error[:100]})" if error else f" (HTTP {answer.status_code})")
                + ". Start again with the single sign-on button; if it keeps failing, ask an "
                "admin to check PODSTACK_OIDC_CLIENT_ID and PODSTACK_OIDC_CLIENT_SECRET.",
            )
        if not isinstance(data, dict):
            raise Unauthenticated("The identity provider's token answer is not a JSON object.")
        return data

    def verify_id_token(
        self, id_token: Any, nonce: str, access_token: Any = None
    ) -> dict[str, Any]:
        """Signature (the provider's keys, its advertised algorithms, never ``none`` or a
        shared-secret algorithm) and claims (iss, aud, exp, iat, nonce, azp, at_hash) of an
        ID token; raises Unauthenticated saying which check failed."""
        if not isinstance(id_token, str) or not id_token:
            raise Unauthenticated(
                "The identity provider answered without an ID token; is 'openid' in "
                "PODSTACK_OIDC_SCOPES?"
            )
        meta = self.metadata()
        advertised = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        # Unsigned tokens and HMAC tokens (keyed with the client secret, which this server
        # never uses as a verification key) are never accepted, whatever the provider says.
        algorithms = [
            a for a in advertised if isinstance(a, str) and a != "none" and not a.startswith("HS")
        ]
        try:
            token = self._decode(id_token, algorithms, force=False)
        except InvalidKeyIdError:
            token = self._decode(id_token, algorithms, force=True)  # the provider rotated keys
        except JoseError as exc:
            raise _refusal(exc) from None
        params: dict[str, Any] = {"nonce": nonce, "client_id": self.config.client_id}
        if isinstance(access_token, str):
            params["access_token"] = access_token
        options = {
            "iss": {"essential": True, "value": self.config.issuer},
            "aud": {"essential": True, "value": self.config.client_id},
            "nonce": {"essential": True, "value": nonce},
        }
        claims = CodeIDToken(token.claims, token.header, options, params)
        try:
            claims.validate(leeway=LEEWAY_SECONDS)
        except JoseError as exc:
            raise _refusal(exc) from None
        return dict(claims)

    def _decode(self, id_token: str, algorithms: list[str], *, force: bool) -> Any:
        try:
            key_set = KeySet.import_key_set(self.jwks(force=force))
        except (JoseError, ValueError, TypeError) as exc:
            raise ServiceUnavailable(
                f"Single sign-on is unavailable: the identity provider's signing keys could "
                f"not be read ({type(exc).__name__}).",
                {"reason": "oidc_metadata"},
            ) from None
        try:
            return jwt.decode(
                id_token,
                key_set,
                registry=JWSRegistry(algorithms=algorithms, strict_check_header=False),
            )
        except InvalidKeyIdError:
            if force:
                raise Unauthenticated(
                    "The ID token is signed with a key the identity provider does not publish; "
                    "it was refused."
                ) from None
            raise
        except JoseError as exc:
            raise _refusal(exc) from None
        except ValueError:
            raise Unauthenticated("The ID token is not a signed JWT; it was refused.") from None

    def _with_userinfo(self, claims: dict[str, Any], access_token: Any) -> dict[str, Any]:
        """Providers may keep profile and group claims out of the ID token (oidc-provider's
        default, Keycloak's per mapper); then they come from the userinfo endpoint, whose
        answer must be about the same subject (OpenID Connect Core §5.3.2)."""
        wanted = (self.config.username_claim, self.config.groups_claim)
        endpoint = self.metadata().get("userinfo_endpoint")
        if all(c in claims for c in wanted) or not endpoint or not isinstance(access_token, str):
            return claims
        info = self._get_json(
            endpoint, "userinfo endpoint", headers={"Authorization": f"Bearer {access_token}"}
        )
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            raise Unauthenticated(
                "The identity provider's userinfo answer is about another subject than the ID "
                "token; the sign-in was refused."
            )
        merged = dict(info)
        merged.update(claims)  # the signed ID token wins where both have a claim
        for c in wanted:
            if c not in claims and c in info:
                merged[c] = info[c]
        return merged

    def close(self) -> None:
        self._http.close()


def _json(answer: httpx.Response, what: str) -> Any:
    try:
        return json.loads(answer.content)
    except ValueError:
        raise ServiceUnavailable(
            f"Single sign-on is unavailable: the identity provider's {what} did not answer JSON.",
            {"reason": "oidc_provider"},
        ) from None


def _refusal(exc: JoseError) -> Unauthenticated:
    """A failed ID token check, in words (joserfc's messages name the claim)."""
    if isinstance(exc, ExpiredTokenError):
        why = "it has expired (check that this server's clock is right)"
    elif isinstance(exc, UnsupportedAlgorithmError):
        why = (
            "it is unsigned or signed with an algorithm the provider does not advertise "
            "(unsigned 'none' and shared-secret HS* tokens are never accepted)"
        )
    elif isinstance(exc, BadSignatureError):
        why = "its signature does not verify with the provider's published keys"
    elif isinstance(exc, MissingClaimError | InvalidClaimError):
        claim = getattr(exc, "claim", None) or str(exc.description or exc)
        hint = {
            "iss": " (it was issued by another provider than PODSTACK_OIDC_ISSUER)",
            "aud": " (it was issued to another client than PODSTACK_OIDC_CLIENT_ID)",
            "nonce": " (it belongs to another sign-in)",
            "iat": " (issued in the future: check the clocks)",
        }.get(str(claim), "")
        what = "lacks" if isinstance(exc, MissingClaimError) else "has a wrong"
        why = f"it {what} {claim!r} claim{hint}"
    else:
        why = f"it is malformed ({exc.error})"
    return Unauthenticated(f"The identity provider's ID token was refused: {why}.")


_client_lock = threading.Lock()


def client_for(state: Any) -> OidcClient | None:
    """The app's OIDC client (built at first use, kept on ``app.state``), or None when
    single sign-on is not configured."""
    client = getattr(state, "oidc_client", None)
    if client is not None:
        return client
    config = config_of(state.settings)
    if config is None:
        return None
    with _client_lock:
        client = getattr(state, "oidc_client", None)
        if client is None:
            client = OidcClient(config, egress.allow_list(state.settings))
            state.oidc_client = client
    return client
