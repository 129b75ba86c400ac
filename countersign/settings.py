"""Settings from environment variables, read once at start-up.

Every variable is listed in the README's configuration table. A missing or malformed
value raises SettingsError, whose message is one line fit to print as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from environs import Env, EnvError
from marshmallow.validate import Length, OneOf, Range, Regexp


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    redis_url: str | None
    secret_key: str | None
    host: str
    port: int
    data_dir: Path
    redis_prefix: str
    log_level: str
    max_body_bytes: int
    db_pool_size: int
    counts_max_age: int
    worker_batch_size: int
    worker_poll_interval: float
    worker_lease_ms: int
    worker_shutdown_grace: float
    # Test seam: the worker stops itself (SIGSTOP) the first time it reaches this point,
    # so the fault tests can kill or freeze it at an exact step of the counter protocol.
    worker_stop_at: str | None
    live_heartbeat: float
    # None: the API port + 1.
    demo_port: int | None

    def require_servers(self) -> tuple[str, str]:
        """The Postgres and Redis URLs, for processes that cannot start embedded servers."""
        missing = [
            name
            for name, value in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url))
            if not value
        ]
        if missing:
            raise SettingsError(f"{' and '.join(missing)} must be set (or use `countersign dev`)")
        assert self.database_url
        assert self.redis_url
        return self.database_url, self.redis_url

    def require_secret_key(self) -> str:
        if not self.secret_key:
            raise SettingsError(
                "COUNTERSIGN_SECRET_KEY must be set (at least 32 characters; "
                'e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`)'
            )
        return self.secret_key


STOP_POINTS = ("after_claim", "after_apply", "rebuild_before_write")


def load_settings() -> Settings:
    env = Env(expand_vars=False)
    try:
        return Settings(
            database_url=env.str("DATABASE_URL", None, validate=_url("postgres", "postgresql")),
            redis_url=env.str("REDIS_URL", None, validate=_url("redis", "rediss", "unix")),
            secret_key=env.str("COUNTERSIGN_SECRET_KEY", None, validate=Length(min=32)),
            host=env.str("COUNTERSIGN_HOST", "127.0.0.1"),
            port=env.int("COUNTERSIGN_PORT", 8080, validate=Range(min=0, max=65535)),
            data_dir=env.path("COUNTERSIGN_DATA_DIR", Path(".countersign")),
            redis_prefix=env.str(
                "COUNTERSIGN_REDIS_PREFIX", "cs", validate=Regexp(r"^[A-Za-z0-9_.-]{1,64}$")
            ),
            log_level=env.str(
                "COUNTERSIGN_LOG_LEVEL",
                "INFO",
                validate=OneOf(["DEBUG", "INFO", "WARNING", "ERROR"]),
            ).upper(),
            max_body_bytes=env.int(
                "COUNTERSIGN_MAX_BODY_BYTES", 16 * 1024, validate=Range(min=1024)
            ),
            db_pool_size=env.int("COUNTERSIGN_DB_POOL_SIZE", 8, validate=Range(min=2, max=200)),
            counts_max_age=env.int("COUNTERSIGN_COUNTS_MAX_AGE", 2, validate=Range(min=0)),
            worker_batch_size=env.int("COUNTERSIGN_WORKER_BATCH_SIZE", 5000, validate=Range(min=1)),
            worker_poll_interval=env.float(
                "COUNTERSIGN_WORKER_POLL_INTERVAL", 1.0, validate=Range(min=0.01)
            ),
            worker_lease_ms=env.int("COUNTERSIGN_WORKER_LEASE_MS", 10_000, validate=Range(min=100)),
            worker_shutdown_grace=env.float(
                "COUNTERSIGN_WORKER_SHUTDOWN_GRACE", 10.0, validate=Range(min=0)
            ),
            worker_stop_at=env.str("COUNTERSIGN_WORKER_STOP_AT", None, validate=OneOf(STOP_POINTS)),
            live_heartbeat=env.float(
                "COUNTERSIGN_LIVE_HEARTBEAT", 15.0, validate=Range(min=0.1, max=300)
            ),
            demo_port=env.int("COUNTERSIGN_DEMO_PORT", None, validate=Range(min=1, max=65535)),
        )
    except EnvError as exc:
        raise SettingsError(_one_line(str(exc))) from None


def _url(*schemes: str) -> Regexp:
    pattern = rf"^({'|'.join(schemes)})://"
    return Regexp(pattern, error=f"must be a URL starting with {' or '.join(schemes)}://")


def _one_line(message: str) -> str:
    # environs reports "Environment variable "X" invalid: {...}"; keep it readable on one line.
    message = re.sub(r"[\[\]']", "", message)
    return re.sub(r"\s+", " ", message).strip()
