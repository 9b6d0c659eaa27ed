"""A stand-in identity provider for the refusal tests that the real provider cannot produce.

A certified provider never issues an expired, unsigned, wrongly addressed or wrongly nonced ID
token, so those tokens are built here (joserfc, Authlib's JOSE library, with a key the test
controls) and handed out by this small token endpoint on loopback. Discovery and keys are real
HTTP too; only the token's content is the test's choice. Everything else about single sign-on
is tested against the real provider (``harness.py``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeIdp:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"}, private=True)
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"}, private=True)
        self.next_id_token: str | None = None
        self.userinfo: dict[str, Any] = {}
        self.token_requests: list[dict[str, str]] = []
        self.discovery_overrides: dict[str, Any] = {}
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._json(200, {**idp.discovery(), **idp.discovery_overrides})
                elif self.path == "/jwks":
                    self._json(200, {"keys": [idp.key.as_dict(private=False)]})
                elif self.path == "/userinfo":
                    self._json(200, idp.userinfo)
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(
                    p.split("=", 1) for p in self.rfile.read(length).decode().split("&") if p
                )
                idp.token_requests.append(form)
                if self.path != "/token" or idp.next_id_token is None:
                    self._json(400, {"error": "invalid_grant"})
                    return
                self._json(
                    200,
                    {"id_token": idp.next_id_token, "access_token": "at-1", "token_type": "Bearer"},
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/auth",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def claims(self, nonce: str, /, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "sub": "sub-bob",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "preferred_username": "bob",
            "groups": ["ml"],
        }
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, key: RSAKey | None = None) -> str:
        return jwt.encode({"alg": "RS256", "kid": "test-key-1"}, claims, key or self.key)

    @staticmethod
    def unsigned(claims: dict[str, Any]) -> str:
        # alg "none": no library will produce one on purpose, so it is assembled here.
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64url(json.dumps(claims).encode())}."
