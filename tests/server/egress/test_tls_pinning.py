"""Pinning keeps TLS honest: the connection goes to the checked address while SNI and the
certificate check use the URL's host name. A real HTTPS server on loopback with a certificate
for ``hooks.test`` (made here with ``cryptography``); names are answered by an instrumented
resolver, so nothing leaves the machine."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from podstack.server import egress


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsReceiver:
    def __init__(self, cert: Path, key: Path) -> None:
        self.requests: list[dict[str, str]] = []
        self.sni: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append(dict(self.headers.items()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.sni_callback = lambda sock, name, _ctx: outer.sni.append(name)  # type: ignore[assignment,misc]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[TlsReceiver, ssl.SSLContext]]:
    cert, key = _self_signed(tmp_path, "hooks.test")
    receiver = TlsReceiver(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    yield receiver, trust
    receiver.close()


def test_https_to_the_pinned_address_verifies_the_host_name(
    tls: tuple[TlsReceiver, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, trust = tls
    real = socket.getaddrinfo
    asked: list[str] = []

    def resolver(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host in ("hooks.test", "impostor.test"):
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    allow = egress.AllowList.parse("127.0.0.0/8")
    with egress.EgressClient(allow, ssl_context=trust) as client:
        r = client.post(f"https://hooks.test:{receiver.port}/hook", content=b"{}")
        assert r.status_code == 204
        assert asked == ["hooks.test"]  # checked once, connected to that answer
        assert receiver.sni == ["hooks.test"]
        assert receiver.requests[0]["Host"] == f"hooks.test:{receiver.port}"
        # Same address, other name: the certificate is checked against the name, not the IP.
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|hostname"):
            client.post(f"https://impostor.test:{receiver.port}/hook", content=b"{}")
    assert len(receiver.requests) == 1


def test_the_shared_default_context_still_verifies_certificates(
    tls: tuple[TlsReceiver, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Podstack client shares one TLS context per process (podstack/tls.py): sharing
    must not weaken it. Without a context of its own, an outbound request to a server whose
    certificate no trusted CA signed is refused before a byte is sent."""
    from podstack.tls import default_ssl_context

    shared = default_ssl_context()
    assert default_ssl_context() is shared
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    receiver, _ = tls
    real = socket.getaddrinfo

    def resolver(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host == "hooks.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with (
        egress.EgressClient(egress.AllowList.parse("127.0.0.0/8")) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.post(f"https://hooks.test:{receiver.port}/hook", content=b"{}")
    assert receiver.requests == []
