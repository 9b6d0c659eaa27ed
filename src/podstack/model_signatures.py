"""Signatures of model versions in the OpenSSF model-signing format, shared by the server
(which signs every new version) and the SDK (which verifies what it downloads, and signs with
a user's key).

A version's manifest (every file with its sha256) is exactly what `model_signing` computes
for a directory holding the version's files ("files" serialization, sha256), so the bundle
we store is the `model.sig` that `model_signing verify key --signature model.sig
--public_key key.pub <dir>` accepts for a version downloaded with our SDK or CLI, with no
Podstack installed. Signing and verifying go through the `model_signing` library; nothing
here builds a signature by hand.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_FILE = "model.sig"
# Recorded in the signed statement, so a verifier hashing the downloaded directory leaves
# the signature file out (the model_signing CLI also leaves out the file it was given).
IGNORE_PATHS = (SIGNATURE_FILE,)
_SUPPORTED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class SignatureError(Exception):
    """A signature that does not verify, or does not cover these files (``files`` names each
    path that is missing, extra or different)."""

    def __init__(self, message: str, files: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.files = files or []


@dataclass(frozen=True)
class FileDigest:
    path: str
    sha256: str


@dataclass
class Difference:
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # signed, not in these files
    extra: list[str] = field(default_factory=list)  # in these files, not signed

    @property
    def files(self) -> list[str]:
        return sorted({*self.changed, *self.missing, *self.extra})

    def describe(self) -> str:
        parts = []
        if self.changed:
            parts.append("content differs from what was signed: " + ", ".join(self.changed))
        if self.missing:
            parts.append("signed but missing: " + ", ".join(self.missing))
        if self.extra:
            parts.append("not covered by the signature: " + ", ".join(self.extra))
        return "; ".join(parts)


def load_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError as exc:
        raise SignatureError(f"Not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
        key.curve, _SUPPORTED_CURVES
    ):
        raise SignatureError(
            "Model signatures use elliptic-curve keys on P-256, P-384 or P-521 (what "
            "model_signing supports); this public key is not one."
        )
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(pem: str | bytes) -> str:
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo: one id per key, however the PEM
    was wrapped."""
    der = load_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _manifest(name: str, files: Iterable[FileDigest]):  # type: ignore[no-untyped-def]
    from model_signing import manifest as mf
    from model_signing._hashing.hashing import Digest

    serialization_type = mf._FileSerialization(  # the "files" method model_signing verifies
        "sha256", allow_symlinks=False, ignore_paths=[pathlib.Path(p) for p in IGNORE_PATHS]
    )
    items = [
        mf.FileManifestItem(
            path=pathlib.PurePosixPath(f.path), digest=Digest("sha256", bytes.fromhex(f.sha256))
        )
        for f in files
    ]
    return mf.Manifest(name, items, serialization_type)


def _key(private_key_path: pathlib.Path) -> tuple[Any, ec.EllipticCurvePrivateKey]:
    """model_signing's signer and the private key at this path, parsed once per file version
    (the server signs every new version with the same key; a file rewritten in place is read
    again)."""
    st = private_key_path.stat()
    return _parse_key(private_key_path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _parse_key(
    private_key_path: pathlib.Path, _mtime_ns: int, _size: int
) -> tuple[Any, ec.EllipticCurvePrivateKey]:
    from model_signing._signing import sign_ec_key

    key = serialization.load_pem_private_key(private_key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return sign_ec_key.Signer(private_key_path), key


def sign(private_key_path: pathlib.Path, name: str, files: Iterable[FileDigest]) -> str:
    """The model-signing bundle (JSON) over ``files``, signed with the PEM private key at
    ``private_key_path``; ``name`` is informative (model_signing records the directory name)."""
    from model_signing._signing.signing import Payload

    signer, _ = _key(pathlib.Path(private_key_path))
    signature = signer.sign(Payload(_manifest(name, files)))
    return signature.bundle.to_json()


def signed_files(bundle_json: str, public_key_pem: str) -> dict[str, str]:
    """Checks the bundle's signature with the public key; returns what it signed
    (path -> sha256). Raises SignatureError when the signature is not valid for that key."""
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    load_public_key(public_key_pem)
    with tempfile.TemporaryDirectory(prefix="podstack-verify-") as tmp:
        key_path = pathlib.Path(tmp) / "key.pub"
        key_path.write_text(public_key_pem)
        sig_path = pathlib.Path(tmp) / SIGNATURE_FILE
        sig_path.write_text(bundle_json)
        try:
            signature = sign_sigstore_pb.Signature.read(sig_path)
            expected = sign_ec_key.Verifier(key_path).verify(signature)
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureError(f"The signature does not verify with this key: {exc}") from None
        except Exception as exc:  # cryptography's InvalidSignature carries no message
            raise SignatureError(
                f"The signature does not verify with this key ({type(exc).__name__})."
            ) from None
    return {rd.identifier: rd.digest.digest_hex for rd in expected.resource_descriptors()}


def compare(signed: dict[str, str], files: Iterable[FileDigest]) -> Difference:
    actual = {f.path: f.sha256 for f in files}
    return Difference(
        changed=sorted(p for p in actual.keys() & signed.keys() if actual[p] != signed[p]),
        missing=sorted(signed.keys() - actual.keys()),
        extra=sorted(actual.keys() - signed.keys()),
    )


def verify(bundle_json: str, public_key_pem: str, files: Iterable[FileDigest]) -> None:
    """The bundle is a valid signature by this key over exactly these files and digests;
    otherwise SignatureError naming each file that does not match."""
    diff = compare(signed_files(bundle_json, public_key_pem), files)
    if diff.files:
        raise SignatureError(
            f"The files do not match the signature: {diff.describe()}.", diff.files
        )


def statement_digest(statement: dict) -> str:  # type: ignore[type-arg]
    """sha256 of a JSON document in canonical form (sorted keys, no spaces)."""
    raw = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def sign_statement(private_key_path: pathlib.Path, key_ref: str, statement: dict) -> dict:  # type: ignore[type-arg]
    """A DSSE envelope over an in-toto statement, signed with the same key and the same
    pre-authentication encoding model_signing uses for its bundles."""
    import base64

    from model_signing._signing.sign_ec_key import get_ec_key_hash
    from model_signing._signing.sign_sigstore_pb import pae

    _, key = _key(pathlib.Path(private_key_path))
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    sig = key.sign(pae(payload), ec.ECDSA(get_ec_key_hash(key.public_key())))
    return {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_ref, "sig": base64.b64encode(sig).decode()}],
    }


def verify_statement(envelope: dict, public_key_pem: str) -> dict:  # type: ignore[type-arg]
    """The statement inside a DSSE envelope, once its signature checks with the key."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from model_signing._signing.sign_ec_key import get_ec_key_hash
    from model_signing._signing.sign_sigstore_pb import pae

    key = load_public_key(public_key_pem)
    try:
        payload = base64.b64decode(envelope["payload"])
        sig = base64.b64decode(envelope["signatures"][0]["sig"])
        if envelope["payloadType"] != IN_TOTO_PAYLOAD_TYPE:
            raise ValueError(envelope["payloadType"])
        key.verify(sig, pae(payload), ec.ECDSA(get_ec_key_hash(key)))
        return json.loads(payload)
    except (InvalidSignature, KeyError, IndexError, ValueError, TypeError):
        raise SignatureError(
            "The provenance statement's signature does not verify with this key."
        ) from None
