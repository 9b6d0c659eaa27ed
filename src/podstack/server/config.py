"""Server settings. Built once and passed in explicitly (never read from globals later)."""

from __future__ import annotations

from pathlib import Path

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
