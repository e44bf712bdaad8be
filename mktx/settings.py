"""Process configuration: one Settings class, read from `MKTX_*` variables and an optional `.env`."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Dev defaults: usable out of the box on a laptop, refused in production.
DEV_JWT_SECRET = "mktx-dev-jwt-secret-change-me-0123456789"
DEV_ENCRYPTION_KEY = "bWt0eC1kZXYtZW5jcnlwdGlvbi1rZXktMzJieXRlcyE="  # Fernet key, dev only
DEV_X_CONSUMER_KEY = "sandbox-consumer-key"
DEV_X_CONSUMER_SECRET = "sandbox-consumer-secret"
SANDBOX_WEBHOOK_ID = "sandbox-webhook"
X_API_PRODUCTION = "https://api.x.com"


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MKTX_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.development
    log_level: str = "INFO"
    data_dir: Path = Path(".mkt-x")

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    public_url: str | None = None  # how X reaches the webhook; defaults to http://host:port
    rate_limit_per_minute: int = Field(100, ge=1)
    cors_origins: list[str] = []

    # PostgreSQL (None: `mkt-x dev` starts an embedded one)
    database_url: str | None = None
    database_pool_size: int = Field(10, ge=1)
    # How long a request waits for a pooled connection before it is answered 503 (retry).
    database_pool_timeout: float = Field(10.0, gt=0)

    # Temporal (None: `mkt-x dev` starts the dev server)
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "mkt-x"
    temporal_port: int = Field(7233, ge=1, le=65535)
    temporal_ui_port: int = Field(8233, ge=1, le=65535)
    # How often the worker's maintenance Schedule sweeps (webhook events, queued messages)
    maintenance_interval_seconds: int = Field(60, ge=10)
    # On SIGTERM, how long the worker lets its running activities finish before cancelling them
    worker_shutdown_seconds: float = Field(10.0, ge=0)
    # Retention: raw webhook events and records of LLM calls older than these are pruned by
    # the maintenance schedule (services/maintenance/retention.py); spent quota-ledger rows
    # (past the 24 h window twice over) are pruned with them.
    raw_event_retention_days: int = Field(30, ge=1)
    llm_call_retention_days: int = Field(90, ge=1)

    # Auth
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    # X
    x_api_base_url: str = X_API_PRODUCTION
    x_consumer_key: SecretStr = SecretStr(DEV_X_CONSUMER_KEY)
    x_consumer_secret: SecretStr = SecretStr(DEV_X_CONSUMER_SECRET)
    x_bearer_token: SecretStr | None = None
    x_webhook_id: str = SANDBOX_WEBHOOK_ID
    x_timeout_seconds: float = Field(10.0, gt=0)
    # How connecting an account subscribes it to the webhook: Account Activity (one /all
    # subscription) or the X Activity API (one subscription per event type).
    x_events_api: Literal["account_activity", "activity"] = "account_activity"
    sandbox_port: int = Field(8600, ge=1, le=65535)

    # Sending: one ledger of DMs per X account (rolling 24 h) that every sender reserves from
    dm_limit_per_24h: int = Field(500, ge=1)
    campaign_limit_per_24h: int = Field(10_000, ge=1)
    # DMs per rolling 24 h for the whole X app, every merchant's accounts together (X caps an
    # app's DM sends per day as well as each user's); unset: no app-wide cap is reserved.
    app_dm_limit_per_24h: int | None = Field(None, ge=1)
    # An inbound DM this long after a campaign DM counts as a reply to it
    campaign_reply_window_hours: float = Field(72.0, gt=0)

    # Opt-out: an inbound DM that is exactly one of these words (case-insensitive)
    opt_out_keywords: list[str] = ["STOP", "UNSUBSCRIBE"]
    opt_in_keywords: list[str] = ["START"]
    opt_out_confirmation: str = (
        "You have been unsubscribed and will receive no more marketing messages. "
        "Reply START to subscribe again."
    )
    opt_in_confirmation: str = "You are subscribed again. Reply STOP to unsubscribe."

    # LLM
    llm_model: str = "openai/mktx-sandbox"
    llm_api_base: str | None = None
    llm_api_key: SecretStr | None = None
    # One model call may take this long before it counts as the provider failing.
    llm_timeout_seconds: float = Field(20.0, gt=0, le=300)

    # Secrets at rest
    encryption_key: SecretStr = SecretStr(DEV_ENCRYPTION_KEY)

    # Metrics: the API's GET /metrics answers loopback clients, or anyone with this token as
    # Bearer once it is set; the worker serves its own (with Temporal's) on this port.
    metrics_token: SecretStr | None = None
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str | None) -> str | None:
        """Accept any Postgres URL spelling; always talk through psycopg 3."""
        if value is None or value == "":
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError("must be a PostgreSQL URL (postgresql://user:pass@host:port/db)")
        return value

    @field_validator("x_api_base_url", "llm_api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("encryption_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr) -> SecretStr:
        try:
            raw = base64.urlsafe_b64decode(value.get_secret_value().encode())
        except (binascii.Error, ValueError) as exc:
            raise ValueError("must be a urlsafe-base64 Fernet key (32 bytes)") from exc
        if len(raw) != 32:
            raise ValueError("must be a urlsafe-base64 Fernet key (32 bytes)")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _secrets_fit_environment(self) -> Settings:
        if self.jwt_secret is None and self.jwt_public_key is None:
            if self.env is Environment.production:
                raise ValueError("production needs MKTX_JWT_SECRET or MKTX_JWT_PUBLIC_KEY")
            self.jwt_secret = SecretStr(DEV_JWT_SECRET)
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("MKTX_JWT_SECRET must be at least 32 characters")
        if self.env is Environment.production:
            dev_defaults = {
                "MKTX_JWT_SECRET": (self.jwt_secret, DEV_JWT_SECRET),
                "MKTX_ENCRYPTION_KEY": (self.encryption_key, DEV_ENCRYPTION_KEY),
                "MKTX_X_CONSUMER_KEY": (self.x_consumer_key, DEV_X_CONSUMER_KEY),
                "MKTX_X_CONSUMER_SECRET": (self.x_consumer_secret, DEV_X_CONSUMER_SECRET),
            }
            refused = [
                name
                for name, (secret, default) in dev_defaults.items()
                if secret is not None and secret.get_secret_value() == default
            ]
            if refused:
                raise ValueError(
                    "production refuses the development default of " + ", ".join(refused)
                )
            if self.database_url is None:
                raise ValueError("production needs MKTX_DATABASE_URL")
            if self.temporal_address is None:
                raise ValueError("production needs MKTX_TEMPORAL_ADDRESS")
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        base = (self.public_url or self.api_url).rstrip("/")
        return f"{base}/api/v1/mkt-x/webhooks/twitter"

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise ConfigurationError("MKTX_DATABASE_URL is not set (or use `mkt-x dev`)")
        return self.database_url

    def require_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message says which and why."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad setting, named as the operator spells it (MKTX_...)."""
    lines = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        name = "MKTX_" + "_".join(location).upper() if location else "configuration"
        message = error.get("msg", "invalid value").removeprefix("Value error, ")
        lines.append(f"  {name}: {message}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings() -> Settings:
    """Read and validate settings; raises ConfigurationError with a readable message."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
