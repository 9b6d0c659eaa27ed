"""A server whose object store cannot be used stops at start with a clear message (and
creates nothing); with a good bucket it starts and serves from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from podstack.server.artifacts.store_factory import StoreMisconfigured, open_uri
from tests.conftest import free_port
from tests.s3_server import SeaweedS3

pytestmark = pytest.mark.one_db
PODSTACK = str(Path(sys.executable).parent / "podstack")


def _env(tmp_path: Path, s3: SeaweedS3, uri: str, **aws: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PODSTACK_", "AWS_"))}
    env.update(s3.env(**aws))
    env.update(
        {
            "PODSTACK_HOME": str(tmp_path / "home"),
            "PODSTACK_ARTIFACTS_URI": uri,
            "PODSTACK_BACKGROUND_WORKERS": "false",
            "PODSTACK_WORKERS": "1",
        }
    )
    return env


def test_wrong_credentials_stop_the_server_at_start(s3_server: SeaweedS3, tmp_path: Path) -> None:
    """Through `podstack server` itself: exit 1, the store's message, nothing created."""
    bucket = s3_server.new_bucket()
    env = _env(tmp_path, s3_server, f"s3://{bucket}/podstack", AWS_SECRET_ACCESS_KEY="not-it")
    done = subprocess.run(
        [PODSTACK, "server", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert f"s3://{bucket}/podstack" in err and "was denied" in err, err
    assert "AWS_SECRET_ACCESS_KEY" in err  # says what to check
    assert "Traceback" not in done.stderr
    assert "not-it" not in done.stderr + done.stdout  # no secret echoed
    assert not (tmp_path / "home" / "podstack.db").exists()


@pytest.mark.parametrize(
    "case, aws, says",
    [
        ("unknown key", {"AWS_ACCESS_KEY_ID": "nobody"}, "was denied"),
        ("no bucket", {}, "does not exist; create it first"),
        ("nothing listening", {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}, "Cannot reach"),
    ],
)
def test_an_unusable_bucket_is_refused_when_the_store_opens(
    s3_server: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    aws: dict[str, str],
    says: str,
) -> None:
    """What the server (app start), the CLI (gc, backup) and embedded mode all call."""
    bucket = "no-such-bucket-here" if case == "no bucket" else s3_server.new_bucket()
    s3_server.apply_env(monkeypatch, **aws)
    with pytest.raises(StoreMisconfigured) as err:
        open_uri(f"s3://{bucket}/podstack")
    assert says in err.value.message and bucket in err.value.message


def test_no_credentials_at_all_says_which_variables(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.apply_env(monkeypatch)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreMisconfigured) as err:
        open_uri(f"s3://{s3_server.new_bucket()}/p")
    assert "AWS_ACCESS_KEY_ID" in err.value.message
