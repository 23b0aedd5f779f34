"""Settings from the environment (pydantic-settings). Every name is documented in the README.

Unset ``NATS_URL`` / ``DATABASE_URL`` mean "start the embedded server in the data
directory"; set, they point at servers the user runs.

NATS credentials (``CHECKOUT_NATS_*``, docs/security.md) are checked here for combinations
that cannot work (a token and a user, a password without a user, a certificate without its
key): :class:`NatsSettingsError`, whose message names settings, never their values. Secrets
are ``SecretStr`` and errors hide their input, so neither ``repr`` nor a validation error
shows one. Whether the files exist is checked when a connection is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.subjects import DEFAULT_PARTITIONS
from orchestrator.errors import SettingsError
from orchestrator.jetstream.streams import StreamLayout

__all__ = ["NatsSettingsError", "Settings"]


class NatsSettingsError(SettingsError):
    """The NATS credential or TLS settings contradict each other (names only, no values)."""

    code = "invalid_nats_settings"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHECKOUT_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,  # a validation error must not echo a secret's value
    )

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Path(".checkout-orchestrator")

    events_stream: str = "CHECKOUT"
    events_prefix: str = "checkout.events"
    partitions: int = Field(default=DEFAULT_PARTITIONS, ge=1, le=1024)
    commands_stream: str = "CHECKOUT_COMMANDS"
    commands_prefix: str = "checkout.commands"
    duplicate_window_seconds: float = Field(default=300.0, ge=1.0)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    nats_sync_interval: str | None = Field(
        default="always",
        description="fsync policy of the embedded nats-server ('always', '2m', ...)",
    )
    store_timeout_seconds: float = Field(default=5.0, gt=0)
    commands_in_flight: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="commands one worker handles at once; with a provider answering in "
        "300 ms, 256 allow ~850 creates/s per worker (64 allowed 213)",
    )
    embedded_nats_port: int = Field(default=14222, description="preferred; a free one if taken")
    embedded_postgres_port: int = Field(default=15432, description="preferred; a free one if taken")
    routing_rules_path: Path | None = None  # None: the rules shipped in orchestrator.routing
    breaker_consecutive_failures: int = Field(
        default=5, ge=1, description="failures in a row that open a provider's circuit"
    )
    breaker_cool_down_seconds: float = Field(
        default=30.0, gt=0, description="how long an open circuit waits before one probe"
    )

    # -- NATS credentials and TLS (docs/security.md); all unset: anonymous, plain text ------
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    nats_nkey_seed_file: Path | None = Field(default=None, description="an nkey seed (SU...)")
    nats_creds_file: Path | None = Field(default=None, description="a JWT + nkey .creds file")
    nats_tls_ca_file: Path | None = Field(default=None, description="CA of the servers' certs")
    nats_tls_cert_file: Path | None = Field(default=None, description="client cert (mTLS)")
    nats_tls_key_file: Path | None = Field(default=None, description="its private key")
    nats_tls_hostname: str | None = Field(default=None, description="name the certs carry")
    nats_tls_handshake_first: bool = Field(
        default=True,
        description="with TLS set: start TLS before the server speaks, so a plain-text server "
        "never gets the credentials (the server needs tls { handshake_first })",
    )

    # -- projections: read models, projectors, query API -----------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535, description="query API; 0 = any free")
    projector_name: str = Field(default="live", pattern=r"^[a-z0-9:_-]{1,40}$")
    projector_batch_size: int = Field(default=1000, ge=1, le=10_000)
    projector_batch_linger_seconds: float = Field(default=0.0, ge=0.0, le=1.0)
    projector_appliers: int = Field(default=2, ge=1, le=16)
    projector_claim_interval: float = Field(default=1.0, gt=0.0, le=60.0)
    projector_pool_size: int = Field(default=8, ge=2, le=100)
    read_wait_timeout_seconds: float = Field(default=5.0, gt=0.0, le=60.0)

    # -- providers: unset credentials leave a provider out (`up --sandbox` uses simulators) -
    stripe_api_key: SecretStr | None = Field(default=None, validation_alias="STRIPE_API_KEY")
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="STRIPE_WEBHOOK_SECRET"
    )
    stripe_api_base: str | None = Field(default=None, validation_alias="STRIPE_API_BASE")
    polar_access_token: SecretStr | None = Field(
        default=None, validation_alias="POLAR_ACCESS_TOKEN"
    )
    polar_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="POLAR_WEBHOOK_SECRET"
    )
    polar_payment_product_id: str | None = Field(
        default=None, validation_alias="POLAR_PAYMENT_PRODUCT_ID"
    )
    polar_base_url: str = Field(default="https://api.polar.sh", validation_alias="POLAR_BASE_URL")
    lomi_api_key: SecretStr | None = Field(default=None, validation_alias="LOMI_API_KEY")
    lomi_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="LOMI_WEBHOOK_SECRET"
    )
    lomi_base_url: str = Field(default="https://api.lomi.africa", validation_alias="LOMI_BASE_URL")
    kong_token: SecretStr | None = Field(default=None, validation_alias="KONG_TOKEN")
    kong_base_url: str = Field(
        default="https://us.api.konghq.com", validation_alias="KONG_BASE_URL"
    )
    kong_stripe_api_key: SecretStr | None = Field(
        default=None, validation_alias="KONG_STRIPE_API_KEY"
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_service_name: str = Field(
        default="checkout-orchestrator", validation_alias="OTEL_SERVICE_NAME"
    )
    webhook_worker_interval_seconds: float = Field(default=1.0, gt=0)
    api_auth: Literal["required", "disabled"] = Field(
        default="required", description="API keys on the HTTP API; 'disabled' for local demos"
    )
    api_key_cache_seconds: float = Field(default=5.0, ge=0.0, le=60.0)
    settlement_interval_seconds: float = Field(default=5.0, gt=0)
    trace_url_template: str | None = Field(
        default=None,
        description="a trace UI's URL with {trace_id}, e.g. http://localhost:16686/trace/"
        "{trace_id}: the console links trace ids to it",
    )
    log_format: Literal["human", "json"] = Field(
        default="human", description="stderr log lines: 'human' or one JSON object per line"
    )
    reconcile_interval_seconds: float = Field(
        default=30.0, gt=0, description="period of reconciliation rounds"
    )
    reconcile_quiet_seconds: float = Field(
        default=30.0, ge=0, description="an open session is checked after this long without events"
    )
    reconcile_rate_per_second: float = Field(
        default=5.0, gt=0, description="retrievals per provider per second, at most"
    )
    reconcile_backoff_max_seconds: float = Field(
        default=600.0, gt=0, description="longest wait after a provider was unreachable"
    )

    # -- personal data (docs/privacy.md) -------------------------------------------------
    privacy_kek_file: Path | None = Field(
        default=None,
        description="file holding the key-encryption key (32 bytes, base64); with the "
        "embedded Postgres and neither set, one is generated in the data directory",
    )
    privacy_kek: SecretStr | None = Field(
        default=None, description="the key-encryption key itself (32 bytes, base64)"
    )
    personal_metadata_keys: tuple[str, ...] = Field(
        default=(),
        description="metadata keys whose values are personal data: sealed like the customer",
    )

    @model_validator(mode="after")
    def _nats_credentials_fit_together(self) -> Settings:
        for problem in _nats_problems(self):
            raise NatsSettingsError(problem)
        if self.privacy_kek is not None and self.privacy_kek_file is not None:
            raise SettingsError("set CHECKOUT_PRIVACY_KEK or CHECKOUT_PRIVACY_KEK_FILE, not both")
        return self

    def layout(self) -> StreamLayout:
        return StreamLayout(
            events_stream=self.events_stream,
            events_prefix=self.events_prefix,
            partitions=self.partitions,
            commands_stream=self.commands_stream,
            commands_prefix=self.commands_prefix,
            duplicate_window_seconds=self.duplicate_window_seconds,
            replicas=self.stream_replicas,
        )

    @property
    def generated_kek_file(self) -> Path:
        """Where `up` keeps the key-encryption key it generates for the embedded Postgres."""
        return self.data_dir / "privacy-kek"


def _nats_problems(settings: Settings) -> list[str]:
    """What is wrong with the NATS credential and TLS settings, by name (never values)."""
    password = settings.nats_user is not None or settings.nats_password is not None
    methods = [
        name
        for name, used in (
            ("CHECKOUT_NATS_USER/CHECKOUT_NATS_PASSWORD", password),
            ("CHECKOUT_NATS_TOKEN", settings.nats_token is not None),
            ("CHECKOUT_NATS_NKEY_SEED_FILE", settings.nats_nkey_seed_file is not None),
            ("CHECKOUT_NATS_CREDS_FILE", settings.nats_creds_file is not None),
        )
        if used
    ]
    problems: list[str] = []
    if len(methods) > 1:
        problems.append(f"NATS credentials: choose one of {' and '.join(methods)}")
    if password and (settings.nats_user is None or settings.nats_password is None):
        problems.append("CHECKOUT_NATS_USER and CHECKOUT_NATS_PASSWORD go together")
    if (settings.nats_tls_cert_file is None) != (settings.nats_tls_key_file is None):
        problems.append("CHECKOUT_NATS_TLS_CERT_FILE and CHECKOUT_NATS_TLS_KEY_FILE go together")
    return problems
