"""The app's one Settings class: twelve-factor configuration from the environment.

Precedence (highest first): arguments given to `Settings(...)`, real environment
variables, the optional `.env.<APP_ENV>` file, files in `SECRETS_DIR`, then defaults.
Outside development, `Settings.problems()` lists everything that must be fixed
before the app may start; the CLI refuses to serve while that list is not empty.
APP_ENV fails closed: unset, it means production, so a release started without it
gets production's checks; development must be asked for (`APP_ENV=development`).
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import Field, IPvAnyNetwork, Secret, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32

# Values that appear in tutorials, templates and .env.example files. A secret equal to
# one of these is public knowledge, however long it is.
KNOWN_PLACEHOLDERS = frozenset(
    {
        "changeme",
        "change-me",
        "changethis",
        "change_me",
        "secret",
        "password",
        "default",
        "default-secret",
        "my-secret-key",
        "your-secret-key",
        "your-secret-key-here",
        "insecure",
        "xxx",
        "todo",
    }
)

# The secrets production refuses to start without: each one is read by the app (CSRF
# tokens). A required secret that nothing reads only makes operators manage a useless one.
REQUIRED_SECRETS = ("csrf_secret",)

# Used when a secret is unset in development only, so a fresh clone just runs.
DEV_FALLBACK_SECRET = "dev-insecure-secret-for-local-development-only"


def mask_url_password(url: str) -> str:
    """`url` with its password (user part or `password=` query) shown as ***."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all: nothing of it can be shown safely
        return "**********"
    # The user part ends at the last "@", not where urlsplit stops: an unencoded "#" or "?"
    # in a password would end its netloc early and leave the rest of the password shown.
    # Only the password is replaced: urlunsplit would rewrite e.g. sqlite:/// as sqlite:/.
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostinfo = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        url = f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostinfo}"
        parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any("password" in key.lower() for key, _ in query):
        masked = [(k, "***" if "password" in k.lower() else v) for k, v in query]
        base = url.partition("?")[0]
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        url = f"{base}?{urlencode(masked, safe='*')}{fragment}"
    return url


class SecretUrl(Secret[str]):
    """A connection string: repr, str and JSON show it with the password masked."""

    def _display(self) -> str:
        return mask_url_password(self.get_secret_value())


class Environment(StrEnum):
    """Where the app runs; everything but development gets production's strictness."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(BaseSettings):
    """Everything the app reads from its environment; unset APP_ENV means production."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, validate_default=True
    )

    # Fail closed: a release started without APP_ENV gets production's checks, not /docs.
    app_env: Environment = Environment.PRODUCTION
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    instance_id: str = Field(
        "", description="Shown in the X-Instance header; defaults to host:port"
    )
    log_level: LogLevel = "info"
    metrics_enabled: bool = Field(True, description="Record request metrics and serve /metrics")
    # The image listens on 0.0.0.0 without nginx: /metrics (routes, traffic, errors)
    # is for the scraper on a private network, not for the internet.
    metrics_allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default=["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        description="Client networks /metrics answers; others get 403",
    )

    # Timeouts, in seconds. Go's http.Server has read/write/idle timeouts; their Python
    # counterparts: idle -> uvicorn keep-alive, request -> the app's own deadline (504),
    # shutdown -> uvicorn's graceful shutdown. Slow-client read timeouts belong to nginx.
    idle_timeout: float = Field(5.0, gt=0)
    request_timeout: float = Field(30.0, gt=0)
    shutdown_timeout: float = Field(
        8.0, gt=0, description="Keep below the container's grace period"
    )
    drain_seconds: float = Field(
        0.0, ge=0, description="After SIGTERM, answer /ready with 503 this long before closing"
    )
    handover_file: Path | None = Field(
        None,
        description="While this file exists every response says Connection: close, so a "
        "proxy moves its kept-alive connections to the instance that took over",
    )

    # The app is reachable without nginx (the image listens on 0.0.0.0:8080): it
    # bounds request bodies itself, as nginx's client_max_body_size does in front.
    max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest request body accepted; larger ones get 413"
    )

    # Chat: what one anonymous client can make the server hold or do (see chat.py).
    chat_queue_size: int = Field(100, ge=1, description="Undelivered messages per stream")
    chat_max_streams: int = Field(100, ge=1, description="Open chat streams in all")
    chat_max_streams_per_client: int = Field(5, ge=1, description="Open streams per client")
    chat_post_rate: float = Field(1.0, gt=0, description="Chat posts per second per client")
    chat_post_burst: int = Field(10, ge=1, description="Chat posts a client may send at once")

    data_dir: Path = Path("data")
    # Connection strings carry passwords (postgresql://user:pw@host/db): kept masked.
    database_url: SecretUrl | None = None
    db_max_open_conns: int = Field(10, ge=1)
    # At least 1: SQLAlchemy reads pool_size=0 as "no limit at all".
    db_max_idle_conns: int = Field(5, ge=1, description="At most DB_MAX_OPEN_CONNS")
    db_conn_max_lifetime: float = Field(1800.0, gt=0)

    csrf_secret: SecretStr | None = None
    allowed_origins: Annotated[list[str], NoDecode] = []

    redis_url: SecretUrl | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    sentry_dsn: SecretStr | None = None

    @field_validator("allowed_origins", "metrics_allowed_networks", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """ALLOWED_ORIGINS and METRICS_ALLOWED_NETWORKS are comma-separated lists."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _idle_within_open(self) -> Settings:
        """More idle than open connections would silently raise the open cap."""
        if self.db_max_idle_conns > self.db_max_open_conns:
            raise ValueError(
                f"DB_MAX_IDLE_CONNS ({self.db_max_idle_conns}) must not exceed "
                f"DB_MAX_OPEN_CONNS ({self.db_max_open_conns})"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def is_development(self) -> bool:
        return self.app_env is Environment.DEVELOPMENT

    @property
    def app_env_defaulted(self) -> bool:
        """True when no source set APP_ENV: production was chosen for the operator."""
        return "app_env" not in self.model_fields_set

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL, or an SQLite file in DATA_DIR (the embedded default)."""
        url = self.database_url.get_secret_value() if self.database_url else ""
        return url or f"sqlite:///{self.data_dir / 'todos.db'}"

    def secret(self, name: Literal["csrf_secret"]) -> str:
        """The secret's value; in development an unset secret falls back to a fixed one."""
        value: SecretStr | None = getattr(self, name)
        if value is not None:
            return value.get_secret_value()
        if self.is_development:
            return DEV_FALLBACK_SECRET
        raise RuntimeError(f"{name.upper()} is not set")  # problems() prevents this

    def problems(self) -> list[str]:
        """Every reason this configuration must not run; empty in development."""
        if self.is_development:
            return []
        found = [p for name in REQUIRED_SECRETS if (p := self._secret_problem(name))]
        if self.log_level == "debug":
            found.append("LOG_LEVEL=debug is not allowed outside development (it can log secrets)")
        if "*" in self.allowed_origins:
            found.append("ALLOWED_ORIGINS must list origins, not '*'")
        return found

    def _secret_problem(self, name: str) -> str | None:
        value: SecretStr | None = getattr(self, name)
        env_name = name.upper()
        if value is None or not value.get_secret_value().strip():
            return f"{env_name} is not set"
        raw = value.get_secret_value()
        if raw.strip().lower() in KNOWN_PLACEHOLDERS or raw == DEV_FALLBACK_SECRET:
            return f"{env_name} is a well-known placeholder value; generate a real secret"
        if len(raw) < MIN_SECRET_LENGTH:
            return f"{env_name} is too short ({len(raw)} characters, at least {MIN_SECRET_LENGTH})"
        return None


def env_file_for(app_env: str) -> Path:
    """The optional per-environment file APP_ENV selects, e.g. `.env.production`."""
    return Path(os.environ.get("ENV_FILE_DIR", ".")) / f".env.{app_env}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, the `.env.<APP_ENV>` file and SECRETS_DIR."""
    app_env = str(overrides.get("app_env") or os.environ.get("APP_ENV", "production")).lower()
    env_file = env_file_for(app_env)
    secrets_dir = os.environ.get("SECRETS_DIR")
    return Settings(
        _env_file=env_file if env_file.is_file() else None,
        _secrets_dir=secrets_dir if secrets_dir and Path(secrets_dir).is_dir() else None,
        **overrides,
    )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once (tests clear the cache or pass their own)."""
    return load_settings()


class ConfigError(Exception):
    """The configuration must not run; carries every problem found, for one clear message."""

    def __init__(self, problems: list[str], app_env: str = "", *, defaulted: bool = False) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        if defaulted:
            # The operator may not know production was chosen for them: say so first.
            needs = ", ".join(name.upper() for name in REQUIRED_SECRETS)
            head = (
                "refusing to start: APP_ENV is not set, so the app runs as production (the "
                f"safe default) and needs {needs} etc. (set APP_ENV=development to run locally "
                "without them); fix the configuration:"
            )
        else:
            where = f" (APP_ENV={app_env})" if app_env else ""
            head = f"refusing to start{where}: fix the configuration:"
        super().__init__(f"{head}\n{lines}")
