"""Signed model versions: every new version is signed by the server (OpenSSF model-signing
format) with a provenance statement; the SDK verifies before it downloads; deployments refuse
a version whose signature no longer matches; policies can require a key; the released
`model_signing` CLI verifies a version downloaded by our SDK; `podstack verify-store` finds a
damaged blob. Real server over a socket, real keys generated here."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select, update

from podstack import MLOpsClient
from podstack import model_signatures as ms
from podstack.errors import ApprovalRequired, GateFailed, SignatureInvalid, ValidationFailed
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.provenance.models import VersionSignature
from podstack.server.provenance.store_check import verify_store
from podstack.server.registry.models import VersionFile
from tests.conftest import ADMIN_TOKEN, LiveServer, signed_in

pytestmark = pytest.mark.one_db

MODEL_SIGNING = str(Path(sys.executable).parent / "model_signing")


def _key(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    priv = tmp / f"{name}.pem"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub = tmp / f"{name}.pub"
    pub.write_text(ms.public_pem(key.public_key()))
    return priv, pub


@pytest.fixture
def sdk(live_server: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch) -> MLOpsClient:
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    monkeypatch.delenv("PODSTACK_TRUSTED_KEYS", raising=False)
    return MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)


def _version(sdk: MLOpsClient, tmp: Path, name: str = "signed") -> int:
    src = tmp / "src"
    (src / "sub").mkdir(parents=True, exist_ok=True)
    # Content unique to the test: the store is shared and content-addressed.
    (src / "model.onnx").write_bytes(b"weights-" * 1000 + str(tmp).encode())
    (src / "sub" / "config.json").write_text('{"layers": 2}')
    with sdk.start_run("provenance", tags={"git_commit": "abc123"}) as run:
        run.log_params({"lr": "0.01", "epochs": "3"})
        sdk.log_dataset(run.id, "reviews", source_uri="s3://data/reviews", digest="d1g35t")
        run.log_artifacts(str(src), "model")
    return sdk.create_model_version(name, run.id, "model").version


def test_new_version_is_signed_with_provenance_and_verifies(
    sdk: MLOpsClient, tmp_path: Path
) -> None:
    v = _version(sdk, tmp_path)
    sigs = sdk.get_model_version_signatures("signed", v).signatures
    assert [(s.kind, s.signer, s.valid) for s in sigs] == [("server", "server", True)]
    keys = sdk.list_signing_keys()
    assert [k.key_id for k in keys if k.current] == [sigs[0].key_id]
    pred = sigs[0].statement["predicate"]
    assert pred["source_run"]["params"] == {"lr": "0.01", "epochs": "3"}
    assert pred["source_run"]["git_commit"] == "abc123"
    assert pred["datasets"] == [
        {"name": "reviews", "digest": "d1g35t", "source_uri": "s3://data/reviews"}
    ]
    assert sorted(f["path"] for f in pred["files"]) == ["model.onnx", "sub/config.json"]
    assert sigs[0].statement["subject"][0]["name"] == f"models:/signed/{v}"
    assert sdk.verify_model_version("signed", v).id == sigs[0].id
    out = sdk.download_model_version("signed", v, tmp_path / "dl")
    assert (Path(out) / "sub" / "config.json").read_text() == '{"layers": 2}'


def test_a_changed_manifest_is_refused_on_verify_download_and_deploy(
    sdk: MLOpsClient, db: Database, api: httpx.Client, tmp_path: Path, caplog
) -> None:
    v = _version(sdk, tmp_path)
    other = _version(sdk, tmp_path / "b", name="other-model")
    assert other == 1
    # Someone with database access points config.json at other content already in the store.
    with db.session() as s:
        forged = s.scalars(select(VersionFile).where(VersionFile.path == "model.onnx")).first()
        assert forged is not None
        s.execute(
            update(VersionFile)
            .where(VersionFile.path == "sub/config.json", VersionFile.version_id != 0)
            .where(VersionFile.sha256 != forged.sha256)
            .values(sha256=forged.sha256, size=forged.size)
        )
    with pytest.raises(SignatureInvalid) as exc:
        sdk.verify_model_version("signed", v)
    assert "sub/config.json" in exc.value.message and exc.value.details["files"] == [
        "sub/config.json"
    ]
    with pytest.raises(SignatureInvalid):
        sdk.download_model_version("signed", v, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # nothing written before the check
    checks = sdk.get_model_version_signatures("signed", v).signatures
    assert not checks[0].valid and checks[0].files == ["sub/config.json"]
    # Opting out is possible, and said in the log.
    with caplog.at_level(logging.WARNING, logger="podstack.client"):
        sdk.download_model_version("signed", v, tmp_path / "unchecked", verify=False)
    assert "WITHOUT signature verification" in caplog.text
    # Deployments check before loading anything: refused at request time, nothing created.
    r = api.post(
        "/deployments",
        json={"endpoint_name": "forged", "model_name": "signed", "version": v},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "SIGNATURE_INVALID"
    assert "sub/config.json" in r.json()["error"]["message"]
    assert api.get("/deployments/forged").status_code == 404


def test_a_damaged_blob_is_found_on_download_and_by_verify_store(
    sdk: MLOpsClient, db: Database, live_server: LiveServer, tmp_path: Path
) -> None:
    v = _version(sdk, tmp_path)
    files = {f.path: f for f in sdk._version_files("signed", v)}
    digest = files["model.onnx"].sha256
    store = live_server.app.state.store  # the server's own store
    blob = store.path_for(digest)  # the local store; tampering with the disk behind our back
    original = blob.read_bytes()
    blob.chmod(0o600)
    blob.write_bytes(b"evil" + original[4:])
    try:
        with pytest.raises(Exception) as exc:
            sdk.download_model_version("signed", v, tmp_path / "dl")
        assert "model.onnx" in str(exc.value)
        report = verify_store(db, store)
    finally:
        blob.write_bytes(original)
    assert report.corrupted == [digest] and not report.ok
    assert ("signed", v, "model.onnx", digest) in report.damaged_files
    assert report.versions_checked == 1 and report.bad_signatures == []
    assert verify_store(db, store).ok


def test_user_signature_and_a_policy_that_requires_it(
    sdk: MLOpsClient, make_token, tmp_path: Path
) -> None:
    make_token("editor", username="reviewer-1")
    priv, pub = _key(tmp_path, "ci")
    v1 = _version(sdk, tmp_path / "a")
    v2 = _version(sdk, tmp_path / "b")
    ci_id = ms.key_id(pub.read_text())
    # A policy may only name keys the server knows.
    with pytest.raises(ValidationFailed, match="does not know"):
        sdk.set_approval_policy("signed", gated_stages=["Production"], gates=[f"signed_by {ci_id}"])
    check = sdk.sign_model_version("signed", v1, key=priv)
    assert check.valid and check.kind == "user" and check.signer == "admin"
    assert check.key_id == ci_id
    assert [s.kind for s in sdk.get_model_version_signatures("signed", v1).signatures] == [
        "server",
        "user",
    ]
    sdk.set_approval_policy(
        "signed",
        gated_stages=["Production"],
        reviewers=["reviewer-1"],
        gates=["signed_by server", f"signed_by {ci_id}"],
    )
    with pytest.raises(GateFailed) as failed:
        sdk.transition_model_version_stage("signed", v2, "Production")
    assert f"no valid signature by key {ci_id}" in failed.value.message
    assert sdk.get_model_version("signed", v2).stage == "None"
    with pytest.raises(ApprovalRequired) as pending:
        sdk.transition_model_version_stage("signed", v1, "Production")
    req = sdk.get_approval_request(pending.value.details["request_id"])
    assert {g.expression: g.passed for g in req.gate_results} == {
        "signed_by server": True,
        f"signed_by {ci_id}": True,
    }


def test_bad_signatures_are_refused_and_nothing_is_recorded(
    sdk: MLOpsClient, api: httpx.Client, make_token, client_for, tmp_path: Path
) -> None:
    priv, pub = _key(tmp_path, "user")
    v = _version(sdk, tmp_path)
    url = f"/registered-models/signed/versions/{v}/signatures"
    # A signature over other files (one digest changed).
    files = [ms.FileDigest(f.path, f.sha256) for f in sdk._version_files("signed", v)]
    files[0] = ms.FileDigest(files[0].path, "0" * 64)
    bad = ms.sign(priv, "signed", files)
    r = api.post(url, json={"bundle": bad, "public_key": pub.read_text()})
    assert r.status_code == 422 and r.json()["error"]["details"]["files"] == [files[0].path]
    assert files[0].path in r.json()["error"]["message"]
    good = ms.sign(
        priv, "signed", [ms.FileDigest(f.path, f.sha256) for f in sdk._version_files("signed", v)]
    )
    _, other_pub = _key(tmp_path, "other")
    r = api.post(url, json={"bundle": good, "public_key": other_pub.read_text()})
    assert r.status_code == 422 and "does not verify" in r.json()["error"]["message"]
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for body, status in [
        ({"bundle": good, "public_key": rsa_pem}, 422),
        ({"bundle": good, "public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END"}, 422),
        ({"bundle": "{}", "public_key": pub.read_text()}, 422),
        ({"bundle": good}, 422),
        ({"bundle": good, "public_key": pub.read_text(), "extra": 1}, 422),
    ]:
        assert api.post(url, json=body).status_code == status, body
    assert (
        api.post(
            "/registered-models/signed/versions/99/signatures",
            json={"bundle": good, "public_key": pub.read_text()},
        ).status_code
        == 404
    )
    viewer = client_for(make_token("viewer"))
    assert viewer.post(url, json={"bundle": good, "public_key": pub.read_text()}).status_code == 403
    assert viewer.get(url).status_code == 200
    assert [s.kind for s in sdk.get_model_version_signatures("signed", v).signatures] == ["server"]


def test_pinned_keys_and_the_released_model_signing_cli(sdk: MLOpsClient, tmp_path: Path) -> None:
    v = _version(sdk, tmp_path)
    _, stranger = _key(tmp_path, "stranger")
    with pytest.raises(SignatureInvalid, match="not trusted"):
        sdk.verify_model_version("signed", v, trusted_keys=[stranger])
    server_pub = tmp_path / "server.pub"
    server_pub.write_text(next(k.public_pem for k in sdk.list_signing_keys() if k.current))
    assert sdk.verify_model_version("signed", v, trusted_keys=[server_pub]).kind == "server"
    # What a consumer without Podstack does: the OpenSSF tool on the downloaded directory.
    out = Path(sdk.download_model_version("signed", v, tmp_path / "dl"))
    sig = sdk.save_model_signature("signed", v, tmp_path / "model.sig")
    cmd = [
        MODEL_SIGNING,
        "verify",
        "key",
        "--signature",
        str(sig),
        "--public_key",
        str(server_pub),
        str(out),
    ]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "Verification succeeded" in ok.stdout + ok.stderr, ok
    (out / "sub" / "config.json").write_text('{"layers": 3}')
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "Verification succeeded" not in bad.stdout + bad.stderr
    assert "config.json" in bad.stdout + bad.stderr


def test_rotated_server_key_keeps_old_signatures_valid(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    monkeypatch.delenv("PODSTACK_URL", raising=False)
    monkeypatch.setenv("PODSTACK_HOME", str(settings.home))
    monkeypatch.setenv("PODSTACK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PODSTACK_ARTIFACTS_URI", settings.artifacts_uri)
    old_key, _ = _key(tmp_path, "old")
    new_key, _ = _key(tmp_path, "new")
    monkeypatch.setenv("PODSTACK_SIGNING_KEY", str(old_key))
    with MLOpsClient() as c:
        v1 = _version(c, tmp_path / "1")
    monkeypatch.setenv("PODSTACK_SIGNING_KEY", str(new_key))
    with MLOpsClient() as c:
        v2 = _version(c, tmp_path / "2")
        k1 = c.verify_model_version("signed", v1).key_id
        k2 = c.verify_model_version("signed", v2).key_id
        keys = {k.key_id: k.current for k in c.list_signing_keys()}
    assert k1 != k2 and keys == {k1: False, k2: True}
    monkeypatch.setenv("PODSTACK_SIGNING_KEY", str(tmp_path / "missing.pem"))
    with pytest.raises(Exception, match="PODSTACK_SIGNING_KEY"), MLOpsClient() as c:
        c.list_signing_keys()
    with db.session() as s:
        assert len(s.scalars(select(VersionSignature)).all()) == 2
    assert json.loads(json.dumps(keys))  # plain data


def test_version_page_shows_who_signed_and_the_result(
    sdk: MLOpsClient, live_server: LiveServer, db: Database, tmp_path: Path
) -> None:
    v = _version(sdk, tmp_path)
    priv, _ = _key(tmp_path, "ci")
    sdk.sign_model_version("signed", v, key=priv)
    web = signed_in(live_server.url)
    page = web.get(f"/models/signed/versions/{v}").text
    rows = re.findall(r'<tr data-signature data-valid="(\w+)">\s*<td>([^<]+)</td>', page)
    assert rows == [("true", "Server"), ("true", "admin")]
    with db.session() as s:  # a changed manifest shows as invalid, with the reason
        s.execute(
            update(VersionFile).where(VersionFile.path == "model.onnx").values(sha256="0" * 64)
        )
    page = web.get(f"/models/signed/versions/{v}").text
    assert re.findall(r'data-signature data-valid="(\w+)"', page) == ["false", "false"]
    assert "model.onnx" in page
