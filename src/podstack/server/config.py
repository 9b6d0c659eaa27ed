"""Server settings. Built once and passed in explicitly (never read from globals later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path("~/.podstack").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODSTACK_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str = ""
    artifacts_uri: str = ""
    admin_token: str | None = None
    # Public base URL used in messages (first-start banner, webhook callbacks).
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    no_auth: bool = False
    migrate_on_start: bool = True
    # JSON request bodies above this are refused with 413 (artifact uploads are streamed
    # and limited separately by max_artifact_bytes).
    max_body_bytes: int = 10 * 1024 * 1024
    max_artifact_bytes: int = 64 * 1024**3
    max_page_size: int = 1000
    session_secret: str | None = None
    session_max_age_seconds: int = 12 * 3600
    secure_cookies: bool = False
    login_max_failures: int = 5
    login_lockout_seconds: int = 300
    log_level: str = "info"
    # Embedded mode: in-process app acting as a local admin without tokens.
    embedded: bool = False
    # Background loops (scheduler, webhook delivery, deployment health); tests turn them off.
    background_workers: bool = True
    # Notifications (issue 5)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "podstack@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # Scheduled training (issue 6). PODSTACK_URL handed to jobs is public_url when set, else
    # http://127.0.0.1:<port> (the server as seen from the same host).
    scheduler_tick_seconds: float = 5.0
    # A tick reached later than this is a misfire (server down or overloaded)...
    scheduler_misfire_threshold_seconds: int = 60
    # ...and with the default policy the latest missed tick still runs if it is at most this
    # old (schedules may set their own window).
    scheduler_misfire_grace_seconds: int = 3600
    # A local job's claim lasts this long and its server renews it every tick; a claim that
    # ran out means that server died, so the execution is marked failed.
    scheduler_lease_seconds: int = 120
    # SIGTERM first, SIGKILL to the job's process group if it is still alive after this.
    scheduler_kill_grace_seconds: float = 10.0
    scheduler_webhook_timeout_seconds: float = 10.0
    # Starting a job (webhook POST, Kubernetes submit) is retried on transient errors.
    scheduler_max_start_attempts: int = 3
    kubernetes_namespace: str = "default"
    # GPU type -> extended resource name and node selector for Kubernetes jobs. JSON in env.
    kubernetes_gpu_types: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            name: {"resource": "nvidia.com/gpu", "node_selector": {"nvidia.com/gpu.product": p}}
            for name, p in (
                ("T4", "Tesla-T4"),
                ("L4", "NVIDIA-L4"),
                ("A10G", "NVIDIA-A10G"),
                ("A100", "NVIDIA-A100-SXM4-80GB"),
                ("H100", "NVIDIA-H100-80GB-HBM3"),
            )
        }
    )

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        self.home = Path(self.home).expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'podstack.db'}"
        if not self.artifacts_uri:
            self.artifacts_uri = str(self.home / "artifacts")
        return self

    @property
    def artifacts_path(self) -> Path:
        uri = self.artifacts_uri
        if uri.startswith("file://"):
            uri = uri[len("file://") :]
        return Path(uri).expanduser()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
