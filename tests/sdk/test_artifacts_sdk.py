"""Artifacts through the SDK, on both backends (embedded and a live server)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from podstack import MLOpsClient
from podstack.client.artifacts import artifact_api_path
from podstack.client.transfer import TransferProgress, download_to, upload_file
from podstack.errors import (
    ChecksumMismatch,
    Conflict,
    IntegrityError,
    NotFound,
    PermissionDenied,
    TransportError,
    ValidationFailed,
)
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from tests.conftest import LiveServer


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_log_file_with_and_without_artifact_path(client: MLOpsClient, tmp_path: Path) -> None:
    model = _write(tmp_path / "model.pt", os.urandom(10_000))
    with client.start_run("sdk-art") as run:
        stored = run.log_artifact(str(model))
        assert [(f.path, f.size, f.sha256) for f in stored] == [
            ("model.pt", 10_000, _sha(model.read_bytes()))
        ]
        run.log_artifact(str(model), artifact_path="checkpoints")
    entries = client.list_artifacts(run.id)
    assert [(e.path, e.is_dir) for e in entries] == [("checkpoints", True), ("model.pt", False)]
    assert [e.path for e in client.list_artifacts(run.id, "checkpoints")] == [
        "checkpoints/model.pt"
    ]
    local = client.download_artifacts(run.id, "model.pt", destination=str(tmp_path / "out"))
    assert Path(local) == (tmp_path / "out" / "model.pt").resolve()
    assert Path(local).read_bytes() == model.read_bytes()


def test_log_and_download_directory(client: MLOpsClient, tmp_path: Path) -> None:
    src = tmp_path / "outputs"
    files = {
        "config.json": b"{}",
        "weights/layer1.bin": os.urandom(5000),
        "weights/deep/layer2.bin": os.urandom(7000),
        "empty.txt": b"",
    }
    for rel, data in files.items():
        _write(src / rel, data)
    (src / "nothing-here").mkdir()  # empty directories are not artifacts
    with client.start_run("sdk-dir") as run:
        stored = client.log_artifacts(run.id, src, artifact_path="bundle")
    assert sorted(f.path for f in stored) == sorted(f"bundle/{r}" for r in files)
    rec = client.list_artifacts(run.id, "bundle", recursive=True)
    assert {e.path: e.sha256 for e in rec} == {f"bundle/{r}": _sha(d) for r, d in files.items()}

    dest = tmp_path / "dl"
    out = client.download_artifacts(run.id, "bundle", destination=str(dest))
    assert Path(out) == (dest / "bundle").resolve()
    for rel, data in files.items():
        assert (dest / "bundle" / rel).read_bytes() == data
    everything = client.download_artifacts(run.id, destination=str(tmp_path / "all"))
    assert Path(everything) == (tmp_path / "all").resolve()
    assert (tmp_path / "all" / "bundle" / "weights" / "deep" / "layer2.bin").exists()


def test_seed_integration_example(
    client: MLOpsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("model.pt").write_bytes(b"state dict")
    with client.start_run(experiment_id="sentiment-exp") as run:
        run.log_params({"lr": 0.001, "epochs": 10})
        run.log_metrics({"accuracy": 0.94, "f1": 0.92})
        run.log_artifact("model.pt")
        run_id = run.id
    assert [e.path for e in client.list_artifacts(run_id)] == ["model.pt"]
    got = client.download_artifacts(run_id, "model.pt", destination="back")
    assert Path(got).read_bytes() == b"state dict"


def test_download_skips_files_already_present(client: MLOpsClient, tmp_path: Path) -> None:
    data = os.urandom(20_000)
    with client.start_run("sdk-skip") as run:
        client.log_artifact(run.id, _write(tmp_path / "src" / "a.bin", data))
    dest = tmp_path / "dest"
    first = Path(client.download_artifacts(run.id, "a.bin", destination=str(dest)))
    inode = first.stat().st_ino
    client.download_artifacts(run.id, "a.bin", destination=str(dest))
    assert first.stat().st_ino == inode  # untouched: not re-downloaded and renamed over
    # Wrong local content (same size) is replaced, not trusted.
    first.write_bytes(os.urandom(20_000))
    client.download_artifacts(run.id, "a.bin", destination=str(dest))
    assert first.read_bytes() == data and first.stat().st_ino != inode
    assert not (dest / "a.bin.part").exists()


def test_stale_part_file_is_replaced(client: MLOpsClient, tmp_path: Path) -> None:
    data = os.urandom(3000)
    with client.start_run("sdk-part") as run:
        client.log_artifact(run.id, _write(tmp_path / "m.bin", data))
    dest = tmp_path / "dest"
    _write(dest / "m.bin.part", b"left over by a crashed download, much longer than 3000" * 99)
    client.download_artifacts(run.id, "m.bin", destination=str(dest))
    assert (dest / "m.bin").read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["m.bin"]


@pytest.mark.local_store  # damages the blob file on disk
def test_corrupted_blob_fails_download_and_leaves_no_file(
    client: MLOpsClient, tmp_path: Path, settings: Settings
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    with client.start_run("sdk-corrupt") as run:
        client.log_artifact(run.id, _write(tmp_path / "c.bin", data))
    blob = BlobStore(settings.artifacts_path).path_for(_sha(data))
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    dest = tmp_path / "dest"
    # Embedded: the server's IntegrityError itself; HTTP: the connection is cut before the
    # last chunk, which the SDK reports as an interrupted transfer.
    with pytest.raises((IntegrityError, TransportError)) as err:
        client.download_artifacts(run.id, "c.bin", destination=str(dest))
    assert "c.bin" in str(err.value) or "corrupted" in str(err.value)
    assert not (dest / "c.bin").exists()
    assert not (dest / "c.bin.part").exists()
    blob.write_bytes(data)  # repair for other tests sharing the store


def test_download_to_checks_expected_digest(client: MLOpsClient, tmp_path: Path) -> None:
    data = b"payload"
    with client.start_run("sdk-digest") as run:
        client.log_artifact(run.id, _write(tmp_path / "p.txt", data))
    api_path = artifact_api_path(run.id, "p.txt")
    dest = tmp_path / "d" / "p.txt"
    with pytest.raises(IntegrityError, match="changed since it was listed"):
        download_to(client, api_path, dest, expected_sha256=_sha(b"other"), size=len(data))
    assert not dest.exists() and not dest.with_name("p.txt.part").exists()
    # Without expectations the response headers are checked.
    assert download_to(client, api_path, dest).read_bytes() == data


def test_upload_with_wrong_checksum_is_refused(client: MLOpsClient, tmp_path: Path) -> None:
    f = _write(tmp_path / "x.bin", b"real content")
    with client.start_run("sdk-sum") as run:
        with pytest.raises(ChecksumMismatch) as err:
            upload_file(client, artifact_api_path(run.id, "x.bin"), f, sha256=_sha(b"fake"))
        assert err.value.status == 400 and "X-Content-SHA256" in err.value.message
        assert client.list_artifacts(run.id) == []


BAD_PATHS = [
    ("/abs", "absolute"),
    ("../up", "parent_segment"),
    ("a//b", "empty_segment"),
    ("a\x00b", "nul"),
    ("a\\b", "backslash"),
    ("./a", "dot_segment"),
]


def test_bad_artifact_paths(client: MLOpsClient, tmp_path: Path) -> None:
    f = _write(tmp_path / "f.txt", b"f")
    with client.start_run("sdk-bad") as run:
        for artifact_path, reason in BAD_PATHS:
            with pytest.raises(ValidationFailed) as err:
                client.log_artifact(run.id, f, artifact_path=artifact_path)
            assert err.value.details["reason"] == reason, artifact_path
            # The server refuses the same paths when they reach it directly.
            with pytest.raises(ValidationFailed) as err:
                upload_file(client, artifact_api_path(run.id, f"{artifact_path}/f.txt"), f)
            assert err.value.details["reason"] == reason, artifact_path
            with pytest.raises(ValidationFailed):
                client.download_artifacts(run.id, artifact_path, destination=str(tmp_path / "d"))
        assert client.list_artifacts(run.id, recursive=True) == []


def test_directory_with_an_unusable_name_uploads_nothing(
    client: MLOpsClient, tmp_path: Path
) -> None:
    _write(tmp_path / "src" / "good.txt", b"g")
    _write(tmp_path / "src" / "bad\\name.txt", b"b")  # a legal file name on Linux only
    with client.start_run("sdk-bad-dir") as run:
        with pytest.raises(ValidationFailed, match="backslash"):
            client.log_artifact(run.id, tmp_path / "src")
        assert client.list_artifacts(run.id) == []


def test_errors_unknown_run_finished_run_missing_file(client: MLOpsClient, tmp_path: Path) -> None:
    f = _write(tmp_path / "f.txt", b"f")
    with pytest.raises(NotFound, match="run-0000"):
        client.log_artifact("run-0000", f)
    with pytest.raises(NotFound):
        client.list_artifacts("run-0000")
    with client.start_run("sdk-done") as run:
        pass
    with pytest.raises(Conflict, match="FINISHED"):
        client.log_artifact(run.id, f)
    with pytest.raises(NotFound, match="no artifacts"):
        client.download_artifacts(run.id, "nope.txt", destination=str(tmp_path))
    with pytest.raises(FileNotFoundError):
        client.log_artifact(run.id, tmp_path / "does-not-exist")


def test_viewer_cannot_log(
    live_server: LiveServer, make_token: Callable[..., str], client: MLOpsClient, tmp_path: Path
) -> None:
    f = _write(tmp_path / "f.txt", b"f")
    with client.start_run("sdk-viewer") as run:
        client.log_artifact(run.id, f)
        with MLOpsClient(api_token=make_token("viewer"), url=live_server.url) as viewer:
            with pytest.raises(PermissionDenied, match="editor"):
                viewer.log_artifact(run.id, f, artifact_path="other")
            # Reading is fine.
            out = viewer.download_artifacts(run.id, "f.txt", destination=str(tmp_path / "v"))
            assert Path(out).read_bytes() == b"f"


def test_progress_bars_render(
    client: MLOpsClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = _write(tmp_path / "big.bin", os.urandom(5 * 1024 * 1024))
    with client.start_run("sdk-progress") as run, TransferProgress(enabled=True) as bars:
        upload_file(client, artifact_api_path(run.id, "big.bin"), big, progress=bars)
        download_to(client, artifact_api_path(run.id, "big.bin"), tmp_path / "o.bin", progress=bars)
    assert (tmp_path / "o.bin").read_bytes() == big.read_bytes()
    err = capsys.readouterr().err
    assert "Uploading big.bin" in err and "Downloading o.bin" in err


# ---------------------------------------------------------------- constant memory


@contextmanager
def _peak_rss_growth() -> Iterator[dict[str, int]]:
    """Samples this process's RSS every 10 ms (the live server runs in-process, in a thread)."""
    proc = psutil.Process()
    result = {"baseline": proc.memory_info().rss, "peak": 0}
    result["peak"] = result["baseline"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            result["peak"] = max(result["peak"], proc.memory_info().rss)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield result
    finally:
        stop.set()
        t.join()
        result["growth"] = result["peak"] - result["baseline"]


def test_large_file_round_trip_in_constant_memory(client: MLOpsClient, tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    src = tmp_path / "large.bin"
    with open(src, "wb") as fh:  # sparse: cheap to create, a unique header defeats dedup
        fh.write(os.urandom(4096))
        fh.truncate(size)
    with client.start_run("sdk-large") as run:
        client.log_artifact(run.id, _write(tmp_path / "warm.bin", b"warm-up"))  # lazy imports
        with _peak_rss_growth() as up:
            (stored,) = client.log_artifact(run.id, src)
        assert stored.size == size
    dest = tmp_path / "dest"
    client.download_artifacts(run.id, "warm.bin", destination=str(dest))
    with _peak_rss_growth() as down:
        out = Path(client.download_artifacts(run.id, "large.bin", destination=str(dest)))
    assert out.stat().st_size == size
    from podstack.client.transfer import sha256_file

    assert sha256_file(out) == stored.sha256
    limit = 50 * 1024 * 1024
    assert up["growth"] < limit, f"upload grew RSS by {up['growth'] / 2**20:.1f} MiB"
    assert down["growth"] < limit, f"download grew RSS by {down['growth'] / 2**20:.1f} MiB"


def test_log_artifact_on_a_directory_keeps_its_name_as_in_mlflow(
    client: MLOpsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed logs ``checkpoints/`` and registers ``checkpoints/best_model.pt``."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "checkpoints" / "best_model.pt", b"best")
    _write(tmp_path / "checkpoints" / "epoch" / "3.pt", b"three")
    with client.start_run("sdk-dir-name") as run:
        run.log_artifact("checkpoints")
        run.log_artifact("checkpoints/", "runs")  # trailing slash: same name
        run.log_artifacts("checkpoints", "flat")  # contents only, as today
        run.log_artifacts("checkpoints")
    paths = sorted(e.path for e in client.list_artifacts(run.id, recursive=True))
    assert paths == sorted(
        [
            "checkpoints/best_model.pt",
            "checkpoints/epoch/3.pt",
            "runs/checkpoints/best_model.pt",
            "runs/checkpoints/epoch/3.pt",
            "flat/best_model.pt",
            "flat/epoch/3.pt",
            "best_model.pt",
            "epoch/3.pt",
        ]
    )
    v = client.create_model_version(
        model_name="dir-name-model",
        source_run_id=run.id,
        artifact_path="checkpoints/best_model.pt",
    )
    assert v.version == 1
