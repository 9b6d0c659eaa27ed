"""Deployments on the S3 store: the local target materialises a version's files from the
bucket (verified), format detection reads them through ranged GETs, and the KServe target
points ``storageUri`` at the version's files that Podstack copied inside the bucket. No
cluster runs here: the Kubernetes API is tests/server/deployments' recording fake (with
KServe's CRD schema); the bucket is the real SeaweedFS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podstack.errors import IntegrityError
from podstack.server.artifacts.store_factory import open_uri
from podstack.server.artifacts.store_s3 import S3BlobStore
from podstack.server.config import Settings
from podstack.server.deployments import kubernetes as k8s
from podstack.server.deployments.local import LocalTarget
from podstack.server.deployments.targets import RunSpec, StartFailed
from podstack.serving import formats as fmt
from tests.s3_server import SeaweedS3
from tests.server.deployments.test_kubernetes_target import (
    FakeKServe,
    assert_valid_inference_service,
)

pytestmark = pytest.mark.one_db


def _spec(files: list[tuple[str, str]], version: int = 1) -> RunSpec:
    return RunSpec(
        deployment_id="dep-s3",
        endpoint="fraud",
        model_name="fraud-model",
        version=version,
        version_id=version,
        format="onnx",
        files=files,
        min_replicas=1,
        max_replicas=1,
        gpu_type=None,
        trusted=False,
    )


@pytest.fixture
def store(s3_uri: str) -> S3BlobStore:
    s = open_uri(s3_uri)
    assert isinstance(s, S3BlobStore)
    return s


def test_local_target_materialises_files_from_the_bucket(
    store: S3BlobStore, settings: Settings, tmp_path: Path
) -> None:
    weights = os.urandom(3 * 1024 * 1024)
    a, b = store.put_iter([weights]), store.put_iter([b"{}"])
    home = settings.model_copy(update={"home": tmp_path / "home"})
    target = LocalTarget("local", {}, home, store)
    root = target.materialise(_spec([("model.onnx", a.sha256), ("meta/cfg.json", b.sha256)]))
    assert (root / "model.onnx").read_bytes() == weights
    assert (root / "meta" / "cfg.json").read_bytes() == b"{}"
    # Bytes changed in the bucket behind Podstack's back are refused, not served.
    store.client.put_object(Bucket=store.bucket, Key=store.key_for(a.sha256), Body=b"tampered")
    with pytest.raises(IntegrityError):
        target.materialise(_spec([("model.onnx", a.sha256)], version=2))


def test_format_detection_reads_the_bucket(store: S3BlobStore) -> None:
    mlmodel = b"flavors:\n  onnx:\n    data: model.onnx\n"
    files = {
        "MLmodel": store.put_iter([mlmodel]).sha256,
        "model.onnx": store.put_iter([b"x"]).sha256,
    }
    try:
        servable = fmt.detect(list(files), lambda p: store.open_blob(files[p]))
    except fmt.NotServable as exc:  # the bytes were read from the bucket either way
        pytest.fail(f"not servable: {exc.reason}")
    assert servable.format == fmt.ONNX


def test_kserve_storage_uri_points_at_files_podstack_copied_into_the_bucket(
    store: S3BlobStore,
    s3_server: SeaweedS3,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeKServe()
    monkeypatch.setattr(k8s, "api_factory", lambda config: fake.api)
    onnx = store.put_iter([b"onnx weights"])
    target = k8s.KubernetesTarget(
        "k8s", {"namespace": "models", "poll_seconds": 0.01}, settings, store
    )
    spec = _spec([("model.onnx", onnx.sha256)], version=3)
    target.start(spec)
    isvc = fake.objects[("models", "fraud")]
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert uri == f"s3://{store.bucket}/podstack/models/fraud-model/3/"
    assert_valid_inference_service(target.manifest(spec))
    key = "podstack/models/fraud-model/3/model.onnx"
    got = s3_server.client().get_object(Bucket=store.bucket, Key=key)["Body"].read()
    assert got == b"onnx weights"
    # An admin's own storage_uri_base still wins (files synced by other means).
    own = k8s.KubernetesTarget("k8s", {"storage_uri_base": "s3://elsewhere/m"}, settings, store)
    assert own.storage_uri(spec) == "s3://elsewhere/m/fraud-model/3"
    # A file missing from the bucket fails the deployment with the reason, before KServe.
    fake.calls.clear()
    with pytest.raises(StartFailed) as err:
        target.start(_spec([("model.onnx", "e" * 64)], version=4))
    assert "missing from the store" in err.value.reason and fake.calls == []
