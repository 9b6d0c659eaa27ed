"""The server's signing key: ``PODSTACK_SIGNING_KEY`` (a path to a PEM EC private key on
P-256/P-384/P-521), else ``$PODSTACK_HOME/signing_key.pem`` generated on first start (0600),
so every installation signs from its first version. Rotation: point the variable at a new
key; every public key that ever signed stays in the ``signing_keys`` table, so older
signatures keep verifying."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from podstack import model_signatures as ms
from podstack.errors import ValidationFailed

KEY_FILE = "signing_key.pem"
KEY_ENV = "PODSTACK_SIGNING_KEY"


@dataclass(frozen=True)
class ServerKey:
    path: Path
    public_pem: str
    key_id: str


def _generate(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    try:
        # Atomic and refusing an existing name: processes starting together share one key.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def load(settings: Any) -> ServerKey:
    configured = getattr(settings, "signing_key", None)
    if configured:
        path = Path(str(configured)).expanduser()
    else:
        path = Path(settings.home) / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _generate(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValidationFailed(
            f"{KEY_ENV}: cannot read an unencrypted PEM private key from {path} ({exc}). "
            "Create one with `openssl ecparam -name prime256v1 -genkey -noout -out key.pem`.",
            {"setting": KEY_ENV},
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValidationFailed(
            f"{KEY_ENV}: {path} is not an elliptic-curve key; model signatures use P-256, "
            "P-384 or P-521 keys (what the OpenSSF model_signing tools verify).",
            {"setting": KEY_ENV},
        )
    pem = ms.public_pem(key.public_key())
    ms.load_public_key(pem)  # checks the curve
    return ServerKey(path=path, public_pem=pem, key_id=ms.key_id(pem))
