"""Two ``podstack server`` processes with separate homes (no shared filesystem) on one
PostgreSQL database and one S3 bucket (the suite's SeaweedFS): what one stores, the other
serves byte for byte, through the SDK, with the seed's registry flow; blobs exist only in the
bucket. Transfers are proxied (the server streams), the mode every client can use."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from podstack import MLOpsClient
from tests.conftest import ADMIN_TOKEN
from tests.reliability.servers import ServerProcess, ServerSpec, create_database, drop_database
from tests.s3_server import SeaweedS3

pytestmark = [pytest.mark.postgres_only, pytest.mark.reliability, pytest.mark.timeout(600)]


@pytest.fixture
def replicas_s3(
    tmp_path: Path, s3_server: SeaweedS3
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    url = create_database(tmp_path)
    bucket = s3_server.new_bucket("replicas")
    env = {
        **s3_server.env(),
        "PODSTACK_ARTIFACTS_URI": f"s3://{bucket}/podstack",
        "PODSTACK_ARTIFACTS_PROXY": "true",
    }
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):  # the first start migrates; the second joins
            home = tmp_path / f"home-{name}"
            spec = ServerSpec(database_url=url, home=home, artifacts=home / "unused", env=env)
            started.append(ServerProcess(spec).wait_ready(timeout=120))
        yield started[0], started[1], bucket
    finally:
        for server in started:
            server.kill()
        drop_database(url)


def test_what_one_replica_stores_the_other_serves(
    replicas_s3: tuple[ServerProcess, ServerProcess, str],
    s3_server: SeaweedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, bucket = replicas_s3
    monkeypatch.setenv("PODSTACK_PROGRESS", "0")
    weights = os.urandom(9 * 1024 * 1024 + 17)  # more than one part on the way in
    src = tmp_path / "model"
    src.mkdir()
    (src / "model.bin").write_bytes(weights)
    (src / "config.json").write_text('{"layers": 2}')
    with MLOpsClient(api_token=ADMIN_TOKEN, url=a.url) as ca:
        with ca.start_run(experiment_id="replicas-s3") as run:
            run.log_params({"lr": 0.01})
            run.log_artifacts(str(src), "model")
        ca.register_model("replicated-model")
        ca.create_model_version("replicated-model", source_run_id=run.id, artifact_path="model")
    with MLOpsClient(api_token=ADMIN_TOKEN, url=b.url) as cb:
        out = Path(cb.download_model_version("replicated-model", 1, tmp_path / "from-b"))
        assert (out / "model.bin").read_bytes() == weights
        assert (out / "config.json").read_text() == '{"layers": 2}'
        # And the other way round: B stores, A serves.
        with cb.start_run(experiment_id="replicas-s3") as run_b:
            run_b.log_artifact(str(src / "config.json"))
    with MLOpsClient(api_token=ADMIN_TOKEN, url=a.url) as ca:
        got = Path(ca.download_artifacts(run_b.id, "config.json", tmp_path / "from-a"))
        assert got.read_text() == '{"layers": 2}'
    digest = hashlib.sha256(weights).hexdigest()
    assert any(k.endswith(digest) for k in s3_server.keys(bucket, "podstack/blobs/"))
    for server in (a, b):  # nothing on either replica's disk
        assert not (server.spec.home / "artifacts").exists()
        assert not (server.spec.home / "unused").exists()
        assert "Traceback" not in server.output
