"""Signing secrets encrypted at rest: webhook secrets and webhook-executor secrets.

They must be readable by the server (an HMAC needs the key in clear), so they are encrypted,
not hashed, with a key kept *outside* the database: ``PODSTACK_SECRET_KEY``, or else a random
key generated once into ``$PODSTACK_HOME/secret_key`` (mode 0600), as the session secret is. A
copy of the database alone (a backup, a stolen file) then holds no usable secret.

Stored values look like ``enc:v1:<Fernet token>`` (Fernet: AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package). A value without the prefix is a plaintext secret from before
encryption; it still works, and ``encrypt_legacy`` (run at server start) rewrites it.
``PODSTACK_SECRET_KEY`` may hold several keys separated by commas: the first encrypts, all
decrypt (rotation). Several replicas must share one key, like the session secret.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"
KEY_FILE = "secret_key"
KEY_ENV = "PODSTACK_SECRET_KEY"


class SecretKeyError(Exception):
    """A stored secret cannot be decrypted with the configured key."""


def _fernet(material: str) -> Fernet:
    # Any string may be configured; HKDF turns it into the 32 bytes Fernet wants.
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"podstack secrets at rest v1"
    ).derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    def __init__(self, material: str) -> None:
        keys = [k.strip() for k in material.split(",") if k.strip()]
        if not keys:
            raise ValueError(f"{KEY_ENV} is empty.")
        self._fernet = MultiFernet([_fernet(k) for k in keys])

    @staticmethod
    def is_encrypted(stored: str | None) -> bool:
        return bool(stored) and str(stored).startswith(PREFIX)

    def encrypt(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode("ascii")

    def decrypt(self, stored: str) -> str:
        """The secret in clear; a legacy plaintext value is returned as is."""
        if not self.is_encrypted(stored):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretKeyError(
                "A stored signing secret cannot be decrypted with the configured key: "
                f"{KEY_ENV} (or $PODSTACK_HOME/{KEY_FILE}) is not the key it was encrypted "
                f"with. Restore the original key (list it after a new one in {KEY_ENV} to "
                "rotate), or set a new secret on the webhook or schedule."
            ) from None


def key_material(settings: Any) -> str:
    """``settings.secret_key``, else the key file in the home, created on first use."""
    configured = getattr(settings, "secret_key", None)
    if configured:
        return str(configured)
    path = Path(settings.home) / KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
        f.flush()
        os.fsync(f.fileno())
    try:
        # link() is atomic and refuses an existing name: two processes starting together on
        # one home agree on the first one's key, and nobody reads a half-written file.
        os.link(tmp, path)
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return value


def for_settings(settings: Any) -> SecretBox:
    return SecretBox(key_material(settings))


def seal_at_start(db: Any, settings: Any, log: Any) -> None:
    """At server start: encrypts signing secrets still stored in clear (databases from before
    encryption at rest, or a restored old backup) and warns, without stopping the server, when
    stored secrets do not decrypt with the configured key (deliveries using them then fail
    with a message saying so)."""
    from podstack.server.notifications import service as notifications
    from podstack.server.schedules import service as schedules

    box = for_settings(settings)
    try:
        with db.session() as s:
            hooks = notifications.encrypt_stored_secrets(s, box)
            jobs = schedules.encrypt_stored_secrets(s, box)
    except Exception as exc:  # database not reachable or not migrated yet: try next start
        log.warning("could not check stored signing secrets at start: %s", str(exc)[:300])
        return
    if hooks[0] or jobs[0]:
        log.info(
            "encrypted %d webhook and %d schedule signing secrets stored in clear",
            hooks[0],
            jobs[0],
        )
    if hooks[1] or jobs[1]:
        log.warning(
            "%d webhook and %d schedule signing secrets cannot be decrypted with the configured "
            "key (%s or $PODSTACK_HOME/%s changed?); their deliveries fail until the original "
            "key is restored or new secrets are set",
            hooks[1],
            jobs[1],
            KEY_ENV,
            KEY_FILE,
        )
