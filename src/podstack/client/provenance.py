"""SDK: signatures of model versions (OpenSSF model-signing format): verify, sign, save.

Which keys are trusted: the public keys in ``PODSTACK_TRUSTED_KEYS`` (comma-separated PEM
files) when set — pin the server's key there and a compromised server cannot vouch for
swapped files — else the keys the server lists at ``/signing-keys``, which still catches any
file or manifest changed in the store after signing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from podstack import model_signatures as ms
from podstack.client.registry import RegistryAPI, VersionRef
from podstack.errors import SignatureInvalid
from podstack.schemas import provenance as psch
from podstack.schemas import registry as sch
from podstack.schemas.artifact_paths import safe_join

log = logging.getLogger("podstack.client")
TRUSTED_KEYS_ENV = "PODSTACK_TRUSTED_KEYS"


def _trusted_from(paths: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in paths:
        pem = Path(p).expanduser().read_text()
        out[ms.key_id(pem)] = pem
    return out


class ProvenanceAPI(RegistryAPI):
    def _signatures_path(self, model_name: str, version: VersionRef) -> str:
        return self._version_path(model_name, version) + "/signatures"

    def download_model_version(
        self,
        model_name: str,
        version: VersionRef,
        destination: str | os.PathLike[str] = ".",
        paths: Sequence[str] | None = None,
        *,
        verify: bool = True,
    ) -> str:
        """As RegistryAPI.download_model_version, after checking that a trusted key signed the
        version's manifest (``verify=False`` skips that check, and says so in the log). The
        bytes are then checked against that manifest file by file, as always, so a file changed
        in the store fails with a message naming it."""
        if verify:
            files = self._version_files(model_name, version)
            # A hostile listing is refused for its paths before anything else is asked.
            for f in files:
                safe_join(Path(destination), f.path)
            self.verify_model_version(model_name, version, files=files)
        else:
            log.warning(
                "Downloading %s version %s WITHOUT signature verification (verify=False).",
                model_name,
                version,
            )
        return super().download_model_version(model_name, version, destination, paths)

    def _version_files(self, model_name: str, version: VersionRef) -> list[sch.VersionFile]:
        rows = self._request("GET", self._version_path(model_name, version) + "/files")
        return [sch.VersionFile.model_validate(r) for r in rows]

    def get_model_version_signatures(
        self, model_name: str, version: VersionRef = None
    ) -> psch.VersionSignatures:
        """Every signature of the version, each checked by the server (``valid``, and the
        files that do not match when it is not), with the provenance statement."""
        return psch.VersionSignatures.model_validate(
            self._request("GET", self._signatures_path(model_name, version))
        )

    def list_signing_keys(self) -> list[psch.SigningKey]:
        return [psch.SigningKey.model_validate(k) for k in self._request("GET", "/signing-keys")]

    def _trusted_keys(
        self, trusted_keys: Sequence[str | os.PathLike[str]] | None
    ) -> dict[str, str]:
        if trusted_keys is None and os.environ.get(TRUSTED_KEYS_ENV):
            trusted_keys = [p for p in os.environ[TRUSTED_KEYS_ENV].split(",") if p.strip()]
        if trusted_keys is not None:
            return _trusted_from(trusted_keys)
        return {k.key_id: k.public_pem for k in self.list_signing_keys()}

    def verify_model_version(
        self,
        model_name: str,
        version: VersionRef = None,
        *,
        trusted_keys: Sequence[str | os.PathLike[str]] | None = None,
        files: Sequence[sch.VersionFile] | None = None,
    ) -> psch.SignatureCheck:
        """Checks, on this machine, that a trusted key signed exactly the version's files and
        digests; returns the signature that verified. Raises SignatureInvalid naming the
        files that differ, or saying no trusted signature exists."""
        base = self._version_path(model_name, version)
        if files is None:
            files = [
                sch.VersionFile.model_validate(r) for r in self._request("GET", base + "/files")
            ]
        listing = [ms.FileDigest(f.path, f.sha256) for f in files]
        sigs = self.get_model_version_signatures(model_name, version)
        keys = self._trusted_keys(trusted_keys)
        problems: list[str] = []
        bad_files: set[str] = set()
        for sig in sigs.signatures:
            pem = keys.get(sig.key_id)
            if pem is None:
                problems.append(f"signature {sig.id} by {sig.signer}: key {sig.key_id} not trusted")
                continue
            try:
                ms.verify(sig.bundle, pem, listing)
                return sig
            except ms.SignatureError as exc:
                problems.append(f"signature {sig.id} by {sig.signer}: {exc.message}")
                bad_files.update(exc.files)
        ref = f"{sigs.model_name!r} version {sigs.version}"
        if not sigs.signatures:
            raise SignatureInvalid(
                f"{ref} has no signature (it predates signing, or was imported unsigned). "
                "Download with verify=False to accept it unverified.",
                {"model_name": sigs.model_name, "version": sigs.version, "files": []},
            )
        raise SignatureInvalid(
            f"{ref} has no valid signature by a trusted key: " + "; ".join(problems),
            {"model_name": sigs.model_name, "version": sigs.version, "files": sorted(bad_files)},
        )

    def sign_model_version(
        self, model_name: str, version: VersionRef = None, *, key: str | os.PathLike[str]
    ) -> psch.SignatureCheck:
        """Signs the version's manifest with your PEM EC private key (P-256/384/521) on this
        machine and attaches the signature, recorded with who signed and when. The private
        key never leaves this machine; the server checks the signature before keeping it."""
        from cryptography.hazmat.primitives import serialization

        base = self._version_path(model_name, version)
        files = self._version_files(model_name, version)
        key_path = Path(key).expanduser()
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        public = ms.public_pem(private.public_key())  # type: ignore[arg-type]
        bundle = ms.sign(
            key_path, str(model_name), [ms.FileDigest(f.path, f.sha256) for f in files]
        )
        body = {"bundle": bundle, "public_key": public}
        return psch.SignatureCheck.model_validate(
            self._request("POST", base + "/signatures", json=body)
        )

    def save_model_signature(
        self,
        model_name: str,
        version: VersionRef = None,
        path: str | os.PathLike[str] = ms.SIGNATURE_FILE,
        *,
        trusted_keys: Sequence[str | os.PathLike[str]] | None = None,
    ) -> Path:
        """Writes the verified signature as a ``model.sig`` file, for ``model_signing verify
        key --signature model.sig --public_key server.pub <downloaded dir>``."""
        sig = self.verify_model_version(model_name, version, trusted_keys=trusted_keys)
        out = Path(path)
        out.write_text(sig.bundle)
        return out
