"""The one gate for HTTP requests the server makes to URLs that users supply (notification
webhooks, the webhook executor of schedules) and to model servers (KServe endpoints, local
model servers: ``deployments/outbound.py``, with its one narrow exemption).

Without it, anyone allowed to set such a URL could make the server call what only the server
can reach: the cloud metadata service (credentials), the database's admin port, the Podstack
API itself as an internal caller, anything on the private network (server-side request
forgery). The rules, in one place:

- the URL is parsed by the same parser that sends it (``httpx.URL``), strictly: ``http`` or
  ``https`` only, no user name or password, no whitespace, control characters or backslashes;
- the host is resolved by the system resolver, which also turns ``2130706433``, ``0x7f.1`` and
  ``127.1`` into ``127.0.0.1``; *every* address it answers must be public: loopback,
  link-local, private, unique-local, shared (CGNAT), multicast, unspecified and reserved
  addresses, IPv4-mapped / NAT64 / 6to4 forms of those, and cloud metadata addresses and host
  names are refused;
- unless ``PODSTACK_OUTBOUND_ALLOW`` (comma-separated CIDRs and host names, ``*.suffix`` for
  subdomains) lists the address or the host name: an admin's decision, e.g. an in-house CI at
  ``10.0.0.0/8`` or ``ci.corp.example``;
- the connection goes to the address that was checked: ``EgressClient``'s network backend
  connects to the pinned addresses and never resolves the name again, so a DNS answer that
  changes between check and connect (DNS rebinding) cannot redirect it. The Host header, TLS
  SNI and certificate verification still use the host name;
- redirects are not followed (a 3xx is an answer like any other).

Answers are reported by status and size only (``describe_answer``): a receiver's body never
reaches a place where a viewer could read it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from podstack.errors import ValidationFailed
from podstack.tls import default_ssl_context

ALLOW_ENV = "PODSTACK_OUTBOUND_ALLOW"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# Names that cloud providers answer with their instance metadata service, refused by name
# whatever they resolve to (and before resolving: a test or a server off the cloud must not
# even ask DNS about them).
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_BAD_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")


class Refused(Exception):
    """An outbound request that the rules refuse; ``reason`` says why, in words."""

    def __init__(self, reason: str, *, unresolved: bool = False, address: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # The host name did not resolve (nothing was refused on its merits).
        self.unresolved = unresolved
        # Refused for where it goes (the allow-list could permit it), not for its form.
        self.address = address


# ---------------------------------------------------------------- the allow-list


@dataclass(frozen=True)
class AllowList:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | None) -> AllowList:
        """``"10.0.0.0/8, 127.0.0.1, ci.corp.example, *.hooks.internal"``; raises ValueError
        naming a bad entry."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in (value or "").split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or not _HOST_RE.match(entry):
                raise ValueError(
                    f"{ALLOW_ENV}: {raw.strip()!r} is neither a CIDR (e.g. 10.0.0.0/8, "
                    "127.0.0.1, fd00::/8) nor a host name (e.g. ci.corp.example, "
                    "*.hooks.internal)."
                )
            if entry.startswith("*."):
                suffixes.append(entry[1:])  # ".hooks.internal"
            else:
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    def permits_host(self, host: str, *, exactly: bool = False) -> bool:
        host = host.lower().rstrip(".")
        return host in self.hosts or (not exactly and any(host.endswith(s) for s in self.suffixes))

    def permits_exact_address(self, ip: IPAddress) -> bool:
        """Listed as a single address (``169.254.169.254``), not as part of a range."""
        inner = _embedded_v4(ip) or ip
        return any(net.num_addresses == 1 and inner in net for net in self.networks)

    def permits_address(self, ip: IPAddress) -> bool:
        candidates = [ip, *([_embedded_v4(ip)] if _embedded_v4(ip) else [])]
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )


def allow_list(settings: Any) -> AllowList:
    """The allow-list of a ``Settings`` (validated when the settings were built)."""
    return AllowList.parse(getattr(settings, "outbound_allow", "") or "")


# ---------------------------------------------------------------- the rules


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be called without the allow-list, or None for a public address."""
    inner = _embedded_v4(ip)
    if inner is not None:
        problem = address_problem(inner)
        return f"{problem} in IPv6 form" if problem else None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.version == 4 and ip in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if ip.version == 6 and ip in _UNIQUE_LOCAL:
        return "a unique-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved, non-public address"
    return None


@dataclass(frozen=True)
class Destination:
    """A checked URL: where it goes and the addresses that may be connected to."""

    url: str
    scheme: str
    host: str  # as sent (punycode, IPv6 without brackets)
    port: int
    addresses: tuple[str, ...]

    @property
    def display(self) -> str:
        return display_url(self.url)


def parse(url: str) -> httpx.URL:
    """Strict parse by the parser that will send the request; raises Refused."""
    if not isinstance(url, str) or not url:
        raise Refused("it is empty")
    if _BAD_CHARS.search(url):
        raise Refused("it contains whitespace, control characters or a backslash")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise Refused(f"it cannot be parsed ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(f"scheme {parsed.scheme or '(none)'!r} is not allowed (http or https only)")
    if not parsed.raw_host:
        raise Refused("it has no host")
    if parsed.userinfo or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise Refused("it contains a user name or password (user:pass@host is not allowed)")
    return parsed


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (numeric forms included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in out:
            out.append(addr)
    return out


def check(url: str, allow: AllowList, *, resolver: Resolver | None = None) -> Destination:
    """Applies every rule to ``url``; returns where to connect, or raises Refused."""
    parsed = parse(url)
    host = parsed.raw_host.decode("ascii").lower()
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    named = host.rstrip(".")
    host_allowed = allow.permits_host(named)
    # Metadata services hand out cloud credentials: only an entry naming exactly that host or
    # address allows them, never a wildcard or a range that happens to contain them.
    if named in METADATA_HOSTS and not allow.permits_host(named, exactly=True):
        raise Refused(f"host {named!r} is a cloud metadata service", address=True)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = (resolver or system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise Refused(f"host {named!r} does not resolve ({exc})", unresolved=True) from None
        if not addresses:
            raise Refused(f"host {named!r} does not resolve", unresolved=True)
    for a in addresses:
        ip = ipaddress.ip_address(a)
        problem = address_problem(ip)
        if problem and ((_embedded_v4(ip) or ip) in METADATA_ADDRESSES):
            allowed = allow.permits_host(named, exactly=True) or allow.permits_exact_address(ip)
        else:
            allowed = host_allowed or allow.permits_address(ip)
        if problem and not allowed:
            if literal is None:
                raise Refused(f"host {named!r} resolves to {ip}, {problem}", address=True)
            raise Refused(f"host {ip} is {problem}", address=True)
    return Destination(str(parsed), parsed.scheme, host, port, tuple(addresses))


def refusal_message(what: str, url: str, reason: str, *, address: bool = True) -> str:
    if not address:
        return (
            f"{what} {display_url(url)!r} is refused: {reason}. Give an absolute http:// or "
            "https:// URL without user name or password, e.g. https://hooks.example.com/podstack."
        )
    return (
        f"{what} {display_url(url)!r} is refused: {reason}. The server does not call "
        "loopback, private, link-local, unique-local, multicast or cloud metadata addresses, "
        f"so this URL cannot reach internal services; an admin can allow specific networks or "
        f"host names with {ALLOW_ENV} (comma-separated CIDRs and host names, e.g. "
        f"{ALLOW_ENV}=10.20.0.0/16,ci.corp.example)."
    )


def validate_url(
    url: str,
    settings: Any,
    *,
    what: str = "URL",
    field: str = "url",
    resolver: Resolver | None = None,
) -> str:
    """For create/update: the stripped URL, or ValidationFailed (422) naming the reason and
    the allow-list setting. A host name that does not resolve *now* is accepted (DNS for a
    new receiver may not exist yet, and tests use names under ``.example``): every send
    checks again and refuses what does not resolve to an allowed address."""
    url = (url or "").strip()
    try:
        check(url, allow_list(settings), resolver=resolver)
    except Refused as exc:
        if not exc.unresolved:
            details = {"field": field, "reason": exc.reason}
            if exc.address:
                details["setting"] = ALLOW_ENV
            raise ValidationFailed(
                refusal_message(what, url, exc.reason, address=exc.address), details
            ) from None
    return url


# ---------------------------------------------------------------- describing answers


def display_url(url: str) -> str:
    """scheme://host[:port]/path, without query or fragment (they may carry tokens), cut to
    a readable length."""
    try:
        u = httpx.URL(url)
        shown = str(u.copy_with(query=None, fragment=None, userinfo=b""))
    except Exception:  # a URL that does not parse is shown as sent, shortened
        shown = url.split("?", 1)[0].split("#", 1)[0]
    return shown if len(shown) <= 200 else shown[:197] + "..."


def describe_answer(method: str, url: str, response: httpx.Response) -> str:
    """``POST https://host/path answered HTTP 500 (1234 bytes)``: status and size only."""
    return (
        f"{method} {display_url(url)} answered HTTP {response.status_code} "
        f"({len(response.content)} bytes)"
    )


# ---------------------------------------------------------------- sending


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the addresses the check approved for (host, port), never resolving."""

    def __init__(self) -> None:
        self._pins: dict[tuple[str, int], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def pin(self, host: str, port: int, addresses: tuple[str, ...]) -> None:
        # Only checked addresses ever get here, so whichever concurrent request's pin a new
        # connection uses, it connects to an approved address.
        with self._lock:
            self._pins[(host.lower(), port)] = addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        with self._lock:
            addresses = self._pins.get((host.lower(), port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the egress rules")
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


class _PinnedTransport(httpx.HTTPTransport):
    def __init__(self, backend: _PinnedBackend, ssl_context: ssl.SSLContext | None) -> None:
        # The base class builds a pool too, replaced below: give it the shared context rather
        # than have it parse the CA bundle for nothing.
        super().__init__(verify=default_ssl_context(), trust_env=False)
        # httpx 0.28 has no public knob for httpcore's network backend (encode/httpx#3749
        # proposes one); the pool is built exactly as HTTPTransport builds it, plus the
        # backend. Host header, SNI and certificate checks stay on the URL's host name.
        self._pool = httpcore.ConnectionPool(
            # CA bundle as httpx's default (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
            ssl_context=ssl_context or default_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


class EgressClient:
    """An httpx client for user-supplied URLs: every request is checked first, then sent to
    the checked addresses; no redirects, no proxies from the environment.

    Proxies from the environment (``HTTPS_PROXY``, ...) are not used: a proxy would resolve
    the name itself, after the check. ``ssl_context`` replaces the default certificate
    verification (e.g. a private CA); ``transport`` replaces the pinned transport (tests that
    need a fake receiver); the check still runs first.
    """

    def __init__(
        self,
        allow: AllowList,
        *,
        timeout: float | httpx.Timeout = 10.0,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
        ssl_context: ssl.SSLContext | None = None,
        exempt: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.allow = allow
        self._resolver = resolver
        # ``exempt(ip, port)``: True for exactly one address the caller itself created (a model
        # server the deployment manager spawned on loopback). Only IP literals reach it, never
        # host names (no lookup a DNS answer could steer), and only for http.
        self._exempt = exempt
        self._backend = _PinnedBackend()
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport or _PinnedTransport(self._backend, ssl_context),
            follow_redirects=False,
            trust_env=False,
        )

    def check(self, url: str) -> Destination:
        if self._exempt is not None:
            parsed = parse(url)
            host = parsed.raw_host.decode("ascii").lower()
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                ipaddress.ip_address(host)
            except ValueError:
                pass
            else:
                if parsed.scheme == "http" and self._exempt(host, port):
                    return Destination(str(parsed), parsed.scheme, host, port, (host,))
        return check(url, self.allow, resolver=self._resolver)

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Any method, as ``post``: raises Refused (nothing sent) or httpx.HTTPError.
        ``timeout`` replaces the client's for this request."""
        dest = self.check(url)
        self._backend.pin(dest.host, dest.port, dest.addresses)
        if timeout is None:
            return self._http.request(method, dest.url, content=content, headers=headers)
        return self._http.request(
            method, dest.url, content=content, headers=headers, timeout=timeout
        )

    def post(
        self, url: str, *, content: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Raises Refused (nothing sent) or httpx.HTTPError."""
        dest = self.check(url)
        self._backend.pin(dest.host, dest.port, dest.addresses)
        return self._http.post(dest.url, content=content, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EgressClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
