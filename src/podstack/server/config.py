"""Server settings. Built once and passed in explicitly (never read from globals later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path("~/.podstack").expanduser()


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting must not echo the others (client secrets,
    # SMTP password) into the start-up error.
    model_config = SettingsConfigDict(
        env_prefix="PODSTACK_", extra="ignore", hide_input_in_errors=True
    )

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
    # Direct transfers (server/transfers): with an object store the SDK moves bytes straight to
    # and from the bucket with presigned URLs; ``artifacts_proxy`` makes every client use the
    # server's streamed routes instead (clients that cannot reach the bucket). Files above the
    # threshold go up in parts of ``artifacts_part_size_bytes`` (S3's minimum part is 5 MiB);
    # presigned URLs are valid for ``artifacts_presign_seconds``.
    artifacts_proxy: bool = False
    artifacts_multipart_threshold_bytes: int = Field(default=64 * 1024**2, ge=0)
    artifacts_part_size_bytes: int = Field(default=16 * 1024**2, ge=5 * 1024**2, le=5 * 1024**3)
    artifacts_presign_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    max_page_size: int = 1000
    session_secret: str | None = None
    # A browser session ends this long after sign-in, whatever happens (absolute lifetime)...
    session_max_age_seconds: int = 12 * 3600
    # ...and after this long without a request (idle timeout). Signing out, a password, role
    # change or disabling the user ends every session of that user at once (deps.py).
    session_idle_seconds: int = 2 * 3600
    # Slow clients: an idle keep-alive connection is closed after keep_alive_timeout_seconds
    # (uvicorn), and a request whose body stops arriving for body_read_timeout_seconds between
    # chunks is answered 408 and closed (middleware.py BodyReadTimeoutMiddleware).
    keep_alive_timeout_seconds: int = 5
    body_read_timeout_seconds: float = 60.0
    secure_cookies: bool = False
    login_max_failures: int = 5
    login_lockout_seconds: int = 300
    log_level: str = "info"
    # Outbound requests to user-supplied URLs (webhooks, webhook executors) are refused when
    # the host is loopback, private, link-local, unique-local, multicast or a cloud metadata
    # address, unless this comma-separated list of CIDRs and host names allows it
    # (server/egress.py).
    outbound_allow: str = ""
    # Encrypts webhook and executor signing secrets at rest; generated into
    # $PODSTACK_HOME/secret_key when unset. "new,old" keeps old values readable (rotation).
    secret_key: str | None = None
    # Signs every new model version (OpenSSF model-signing format): a path to a PEM EC private
    # key (P-256/384/521); unset: $PODSTACK_HOME/signing_key.pem, generated on first start.
    signing_key: str | None = None
    # Single sign-on with OpenID Connect (auth/oidc.py): on when issuer, client id and secret
    # are all set. The issuer's host is reachable by the OIDC client without being listed in
    # outbound_allow (the admin named it here).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None  # SecretStr: never shown in a repr or log
    oidc_scopes: str = "openid profile email groups"
    oidc_username_claim: str = "preferred_username"
    oidc_groups_claim: str = "groups"
    oidc_default_role: str = "viewer"
    # "ml-admins=admin,ml=editor": IdP group -> role; the highest of the default role and
    # every mapped group the user is in wins.
    oidc_group_roles: str = ""
    # Shown as "Sign in with <name>"; defaults to the issuer's host name.
    oidc_provider_name: str | None = None
    # Permissions on models and experiments (permissions/): what everyone holds on a resource
    # they neither own nor were granted, NONE | READ | EDIT | MANAGE. MANAGE is today's
    # behaviour (the global role alone decides); NONE makes models and experiments private to
    # their owners and grantees. Admins always hold MANAGE; a viewer never more than READ.
    default_permission: str = "MANAGE"
    # Embedded mode: in-process app acting as a local admin without tokens.
    embedded: bool = False
    # Background loops (scheduler, webhook delivery, deployment health); tests turn them off.
    background_workers: bool = True
    # `podstack server` sets this: the loops run in one process per home (the holder of an
    # flock on $PODSTACK_HOME/background.lock), not once per --workers process. Replicas on
    # other hosts coordinate through the database as before.
    background_once_per_home: bool = False
    # Worker processes of `podstack server` (--workers); unset: one per core, at most 4.
    workers: int | None = Field(default=None, ge=1, le=64)
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

    @field_validator("artifacts_uri")
    @classmethod
    def _servable_artifacts_uri(cls, uri: str) -> str:
        # Which artifact URIs a server can serve is decided in one place (artifacts/location:
        # a path, file://, or s3://bucket/prefix); anything else stops the server, the CLI and
        # embedded mode here, since all build Settings first.
        from podstack.server.artifacts.location import parse

        if uri:
            parse(uri)
        return uri

    @field_validator("default_permission")
    @classmethod
    def _valid_default_permission(cls, value: str) -> str:
        from podstack.server.permissions.levels import LEVELS

        level = value.strip().upper()
        if level not in LEVELS:
            raise ValueError(
                f"PODSTACK_DEFAULT_PERMISSION must be one of {', '.join(LEVELS)}, not {value!r}."
            )
        return level

    @field_validator("outbound_allow")
    @classmethod
    def _valid_outbound_allow(cls, value: str) -> str:
        # A typo in the allow-list stops the server at start, not at the first webhook.
        from podstack.server.egress import AllowList

        AllowList.parse(value)
        return value

    @model_validator(mode="after")
    def _valid_oidc(self) -> Settings:
        # An incomplete single sign-on setup stops the server at start, naming the setting.
        from podstack.server.auth.oidc import check_settings

        check_settings(self)
        return self

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
        """The local store's folder. Asking it of an object store is a bug (it used to answer
        ``Path("s3:/bucket/…")``, a folder named ``s3:`` in the working directory)."""
        uri = self.artifacts_uri
        if uri.startswith("file://"):
            uri = uri[len("file://") :]
        elif "://" in uri:
            raise ValueError(f"PODSTACK_ARTIFACTS_URI={uri!r} is not a local folder")
        return Path(uri).expanduser()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
