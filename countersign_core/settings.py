"""Settings from environment variables, read once at start-up.

Every variable is listed in the README's configuration table. A missing or malformed
value raises SettingsError, whose message is one line fit to print as it is.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from environs import Env, EnvError, FileAwareEnv
from marshmallow import ValidationError
from marshmallow.validate import Length, OneOf, Range, Regexp

from countersign_core.redis_url import RedisTarget
from countersign_core.smtp import SmtpServer, parse_smtp_url


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests per ``seconds``, in bursts of up to ``count``."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"10/60"`` is 10 per minute; ``"off"`` is no limit (None)."""
        if text.strip().lower() == "off":
            return None
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", text)
        if not match or int(match[1]) < 1 or float(match[2]) <= 0:
            raise ValueError("use COUNT/SECONDS, e.g. 10/60, or off")
        return cls(int(match[1]), float(match[2]))


# Each process reads the groups it needs; the loader below builds them all from the
# environment, so every variable, default and error message lives in one place.


DATABASE_POOLERS = ("none", "transaction")


@dataclass(frozen=True)
class DatabaseConfig:
    url: str | None
    # A connection that bypasses the pooler, for what needs a session of its own: LISTEN,
    # and the migrations' advisory lock. None: ``url`` is direct.
    direct_url: str | None = None
    # ``url`` leads to a pooler in transaction mode (PgBouncer's pool_mode=transaction):
    # no prepared statement may outlive its transaction.
    transaction_pooler: bool = False

    def pooled(self, url: str) -> bool:
        """Whether ``url`` leads through the transaction pooler (an embedded server's
        does not)."""
        return self.transaction_pooler and url == self.url

    def direct(self, url: str) -> str:
        """The session URL (below) for ``url``: an embedded server's is direct already."""
        return self.session_url() if url == self.url else url

    def session_url(self) -> str:
        """The URL for a session's worth of state (LISTEN, advisory locks)."""
        if self.direct_url:
            return self.direct_url
        if self.transaction_pooler:
            raise SettingsError(
                "DATABASE_DIRECT_URL must be set with COUNTERSIGN_DATABASE_POOLER=transaction "
                "(LISTEN and the migrations' lock need a connection that is not pooled)"
            )
        if not self.url:
            raise SettingsError("DATABASE_URL must be set (or use `countersign dev`)")
        return self.url


@dataclass(frozen=True)
class RedisConfig:
    url: str | None
    prefix: str


@dataclass(frozen=True)
class ApiConfig:
    host: str
    port: int
    max_body_bytes: int
    db_pool_size: int
    counts_max_age: int
    counts_cache_ms: int
    # Longest a request waits on Postgres or Redis before it answers 503 (or, for Redis,
    # skips rate limits or serves the last known counts).
    backend_timeout: float
    # X-Forwarded-For is believed only from these peers.
    trusted_proxies: tuple[IPNetwork, ...]
    live_heartbeat: float
    # GET / redirects to this petition's page instead of listing the open petitions.
    home_petition: str | None
    # A petition's share card (card.png) is drawn again at most this often per language.
    card_refresh_seconds: float


@dataclass(frozen=True)
class LimitsConfig:
    """The API's abuse limits (README, "Abuse limits")."""

    mode: str
    # Client ranges exempt from the per-address limits (a university behind one NAT).
    allow: tuple[IPNetwork, ...]
    ip_burst: Rate | None
    ip_sustained: Rate | None
    partner: Rate | None
    overall: Rate | None


@dataclass(frozen=True)
class ConfirmationConfig:
    """Confirmation by email (double opt-in), shared by the API and the mail sender."""

    link_days: int
    emails_per_signature: int
    pending_purge_days: int


@dataclass(frozen=True)
class WorkerConfig:
    batch_size: int
    poll_interval: float
    # Least time between the starts of two batches (seconds): under load, changes that
    # arrive meanwhile wait and go in one batch; a change after a quiet spell goes at once.
    pace: float
    lease_ms: int
    shutdown_grace: float
    # Days a key of the client address hashes lives before the worker destroys it
    # (countersign_domain/ip_keys.py).
    ip_hash_retention_days: int
    # The signature log (README, "A count anyone can verify"): whether the worker appends
    # leaves, and the Ed25519 key it signs heads with (PEM or base64 text; None: a key
    # kept in the data folder).
    signature_log: bool
    log_signing_key: str | None


@dataclass(frozen=True)
class MailDelivery:
    """What sending needs, checked: the server, the From address, where links point."""

    smtp: SmtpServer
    mail_from: str
    public_url: str


@dataclass(frozen=True)
class MailConfig:
    smtp: SmtpServer | None
    mail_from: str | None
    public_url: str | None
    connections: int
    batch_size: int
    poll_interval: float
    lease_seconds: float
    retry_base: float
    max_attempts: int
    shutdown_grace: float
    # Ceilings on what goes out: emails to one recipient address (every petition), and
    # emails overall; beyond them, emails wait (held back) until there is room.
    address_limit: Rate | None
    global_limit: Rate | None

    def require(self) -> MailDelivery:
        """The delivery settings, for the mail sender; SettingsError if one is missing."""
        if missing := _unset(
            SMTP_URL=self.smtp,
            COUNTERSIGN_MAIL_FROM=self.mail_from,
            COUNTERSIGN_PUBLIC_URL=self.public_url,
        ):
            raise SettingsError(f"{missing} must be set to send email")
        assert self.smtp
        assert self.mail_from
        assert self.public_url
        if self.lease_seconds < 3 * self.smtp.timeout:
            raise SettingsError(
                "COUNTERSIGN_MAIL_LEASE_SECONDS must be at least 3 times the SMTP timeout"
            )
        return MailDelivery(self.smtp, self.mail_from, self.public_url)


@dataclass(frozen=True)
class PrivacyConfig:
    """What signers are told about their data, and how finely the public counts split."""

    # Who holds the data, and where its privacy policy is (a petition may say otherwise).
    data_controller: str | None
    policy_url: str | None
    # Public breakdowns (by country) fold every group smaller than this into "other";
    # 0 shows every group.
    breakdown_min: int


@dataclass(frozen=True)
class MetricsConfig:
    host: str
    api_port: int | None
    worker_port: int | None
    mail_port: int | None


@dataclass(frozen=True)
class DevConfig:
    """`countersign dev` and the commands that start embedded servers."""

    data_dir: Path
    # None: the API port + 1.
    demo_port: int | None


@dataclass(frozen=True)
class ConsoleConfig:
    """The staff console (``/admin/``): sign-in links and sessions."""

    link_minutes: int
    idle_minutes: int
    session_hours: int
    # Failed sign-ins (and link requests) per client address.
    sign_in_limit: Rate | None


@dataclass(frozen=True)
class Settings:
    database: DatabaseConfig
    redis: RedisConfig
    api: ApiConfig
    limits: LimitsConfig
    confirmation: ConfirmationConfig
    worker: WorkerConfig
    mail: MailConfig
    privacy: PrivacyConfig
    metrics: MetricsConfig
    dev: DevConfig
    console: ConsoleConfig
    # Shared by several processes.
    secret_key: str | None
    log_level: str
    texts_dir: Path | None
    # Longest a signatures export may stream before it is cut (slow clients, huge files).
    export_timeout: float
    # Seconds between heartbeats of workers and mail senders; stale after 3 missed.
    heartbeat_interval: float

    def require_servers(self) -> tuple[str, str]:
        """The Postgres and Redis URLs, for processes that cannot start embedded servers."""
        if missing := _unset(DATABASE_URL=self.database.url, REDIS_URL=self.redis.url):
            raise SettingsError(f"{missing} must be set (or use `countersign dev`)")
        assert self.database.url
        assert self.redis.url
        return self.database.url, self.redis.url

    def require_secret_key(self) -> str:
        if not self.secret_key:
            raise SettingsError(
                "COUNTERSIGN_SECRET_KEY must be set (at least 32 characters; "
                'e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`)'
            )
        return self.secret_key


RATE_LIMIT_MODES = ("flag", "reject")


def load_settings() -> Settings:
    env = Env(expand_vars=False)
    # Surrounding whitespace of a file, such as its last newline, is no part of a secret.
    secrets = FileAwareEnv(expand_vars=False, strip_whitespace=True)
    try:
        settings = Settings(
            database=DatabaseConfig(
                url=_secret(secrets, "DATABASE_URL", _url("postgres", "postgresql")),
                direct_url=_secret(secrets, "DATABASE_DIRECT_URL", _url("postgres", "postgresql")),
                transaction_pooler=env.str(
                    "COUNTERSIGN_DATABASE_POOLER", "none", validate=OneOf(DATABASE_POOLERS)
                )
                == "transaction",
            ),
            redis=RedisConfig(
                url=_secret(secrets, "REDIS_URL", _valid_redis_url),
                prefix=env.str(
                    "COUNTERSIGN_REDIS_PREFIX", "cs", validate=Regexp(r"^[A-Za-z0-9_.-]{1,64}$")
                ),
            ),
            api=ApiConfig(
                host=env.str("COUNTERSIGN_HOST", "127.0.0.1"),
                port=env.int("COUNTERSIGN_PORT", 8080, validate=Range(min=0, max=65535)),
                max_body_bytes=env.int(
                    "COUNTERSIGN_MAX_BODY_BYTES", 16 * 1024, validate=Range(min=1024)
                ),
                db_pool_size=env.int("COUNTERSIGN_DB_POOL_SIZE", 8, validate=Range(min=2, max=200)),
                counts_max_age=env.int("COUNTERSIGN_COUNTS_MAX_AGE", 2, validate=Range(min=0)),
                counts_cache_ms=env.int(
                    "COUNTERSIGN_COUNTS_CACHE_MS", 100, validate=Range(min=0, max=10_000)
                ),
                backend_timeout=env.float(
                    "COUNTERSIGN_BACKEND_TIMEOUT", 1.0, validate=Range(min=0.05, max=60)
                ),
                trusted_proxies=_networks(env, "COUNTERSIGN_TRUSTED_PROXIES"),
                live_heartbeat=env.float(
                    "COUNTERSIGN_LIVE_HEARTBEAT", 15.0, validate=Range(min=0.1, max=300)
                ),
                home_petition=env.str("COUNTERSIGN_HOME_PETITION", None, validate=Length(1, 100)),
                card_refresh_seconds=env.float(
                    "COUNTERSIGN_CARD_REFRESH_SECONDS", 60.0, validate=Range(min=0, max=86_400)
                ),
            ),
            limits=LimitsConfig(
                mode=env.str(
                    "COUNTERSIGN_RATE_LIMIT_MODE", "flag", validate=OneOf(RATE_LIMIT_MODES)
                ),
                allow=_networks(env, "COUNTERSIGN_RATE_LIMIT_ALLOW"),
                ip_burst=_rate(env, "COUNTERSIGN_RATE_LIMIT_IP_BURST", "10/60"),
                ip_sustained=_rate(env, "COUNTERSIGN_RATE_LIMIT_IP_SUSTAINED", "100/86400"),
                partner=_rate(env, "COUNTERSIGN_RATE_LIMIT_PARTNER", "600/60"),
                overall=_rate(env, "COUNTERSIGN_RATE_LIMIT_GLOBAL", "5000/1"),
            ),
            confirmation=_confirmation(env),
            worker=WorkerConfig(
                batch_size=env.int("COUNTERSIGN_WORKER_BATCH_SIZE", 5000, validate=Range(min=1)),
                poll_interval=env.float(
                    "COUNTERSIGN_WORKER_POLL_INTERVAL", 1.0, validate=Range(min=0.01)
                ),
                pace=env.int("COUNTERSIGN_WORKER_PACE_MS", 25, validate=Range(min=0, max=1000))
                / 1000,
                lease_ms=env.int("COUNTERSIGN_WORKER_LEASE_MS", 10_000, validate=Range(min=100)),
                shutdown_grace=_shutdown_grace(env),
                ip_hash_retention_days=env.int(
                    "COUNTERSIGN_IP_HASH_RETENTION_DAYS", 30, validate=Range(min=1, max=3650)
                ),
                signature_log=env.bool("COUNTERSIGN_SIGNATURE_LOG", True),
                log_signing_key=_secret(secrets, "COUNTERSIGN_LOG_SIGNING_KEY", Length(min=1)),
            ),
            mail=MailConfig(
                smtp=_smtp(_secret(secrets, "SMTP_URL", _valid_smtp_url)),
                mail_from=env.str("COUNTERSIGN_MAIL_FROM", None, validate=_valid_mail_from),
                public_url=_rstrip_slash(
                    env.str("COUNTERSIGN_PUBLIC_URL", None, validate=_url("http", "https"))
                ),
                connections=env.int("COUNTERSIGN_MAIL_CONNECTIONS", 2, validate=Range(1, 64)),
                batch_size=env.int("COUNTERSIGN_MAIL_BATCH_SIZE", 20, validate=Range(1, 1000)),
                poll_interval=env.float(
                    "COUNTERSIGN_MAIL_POLL_INTERVAL", 5.0, validate=Range(min=0.01)
                ),
                lease_seconds=env.float(
                    "COUNTERSIGN_MAIL_LEASE_SECONDS", 120.0, validate=Range(min=1)
                ),
                retry_base=env.float("COUNTERSIGN_MAIL_RETRY_BASE", 30.0, validate=Range(min=0)),
                max_attempts=env.int(
                    "COUNTERSIGN_MAIL_MAX_ATTEMPTS", 8, validate=Range(min=1, max=100)
                ),
                shutdown_grace=_shutdown_grace(env),
                address_limit=_rate(env, "COUNTERSIGN_MAIL_LIMIT_ADDRESS", "5/86400"),
                global_limit=_rate(env, "COUNTERSIGN_MAIL_LIMIT_GLOBAL", "10000/3600"),
            ),
            privacy=PrivacyConfig(
                data_controller=env.str(
                    "COUNTERSIGN_DATA_CONTROLLER", None, validate=Length(min=1, max=200)
                ),
                policy_url=env.str(
                    "COUNTERSIGN_PRIVACY_POLICY_URL", None, validate=_url("http", "https")
                ),
                breakdown_min=env.int(
                    "COUNTERSIGN_PUBLIC_BREAKDOWN_MIN", 5, validate=Range(min=0, max=1_000_000)
                ),
            ),
            metrics=MetricsConfig(
                host=env.str("COUNTERSIGN_METRICS_HOST", "127.0.0.1"),
                api_port=env.int(
                    "COUNTERSIGN_METRICS_PORT", None, validate=Range(min=1, max=65535)
                ),
                worker_port=env.int(
                    "COUNTERSIGN_WORKER_METRICS_PORT", None, validate=Range(min=1, max=65535)
                ),
                mail_port=env.int(
                    "COUNTERSIGN_MAIL_METRICS_PORT", None, validate=Range(min=1, max=65535)
                ),
            ),
            dev=DevConfig(
                data_dir=env.path("COUNTERSIGN_DATA_DIR", Path(".countersign")),
                demo_port=env.int("COUNTERSIGN_DEMO_PORT", None, validate=Range(min=1, max=65535)),
            ),
            console=ConsoleConfig(
                link_minutes=env.int(
                    "COUNTERSIGN_CONSOLE_LINK_MINUTES", 15, validate=Range(min=1, max=1440)
                ),
                idle_minutes=env.int(
                    "COUNTERSIGN_CONSOLE_IDLE_MINUTES", 30, validate=Range(min=1, max=1440)
                ),
                session_hours=env.int(
                    "COUNTERSIGN_CONSOLE_SESSION_HOURS", 12, validate=Range(min=1, max=720)
                ),
                sign_in_limit=_rate(env, "COUNTERSIGN_CONSOLE_SIGN_IN_LIMIT", "10/900"),
            ),
            secret_key=_secret(secrets, "COUNTERSIGN_SECRET_KEY", Length(min=32)),
            log_level=env.str(
                "COUNTERSIGN_LOG_LEVEL",
                "INFO",
                validate=OneOf(["DEBUG", "INFO", "WARNING", "ERROR"]),
            ).upper(),
            texts_dir=env.path("COUNTERSIGN_TEXTS_DIR", None),
            export_timeout=env.float("COUNTERSIGN_EXPORT_TIMEOUT", 3600.0, validate=Range(min=1)),
            heartbeat_interval=env.float(
                "COUNTERSIGN_HEARTBEAT_INTERVAL", 10.0, validate=Range(min=0.1, max=300)
            ),
        )
    except EnvError as exc:
        raise SettingsError(_one_line(str(exc))) from None
    return settings


def _confirmation(env: Env) -> ConfirmationConfig:
    config = ConfirmationConfig(
        link_days=env.int("COUNTERSIGN_CONFIRMATION_LINK_DAYS", 7, validate=Range(min=1, max=365)),
        emails_per_signature=env.int(
            "COUNTERSIGN_CONFIRMATION_EMAILS", 3, validate=Range(min=1, max=20)
        ),
        pending_purge_days=env.int(
            "COUNTERSIGN_PENDING_PURGE_DAYS", 14, validate=Range(min=1, max=3650)
        ),
    )
    if config.pending_purge_days < config.link_days:
        # A link must not outlive the signature it confirms.
        raise SettingsError(
            "COUNTERSIGN_PENDING_PURGE_DAYS must be at least COUNTERSIGN_CONFIRMATION_LINK_DAYS"
        )
    return config


def _shutdown_grace(env: Env) -> float:
    """One variable for both the counter worker and the mail sender."""
    return env.float("COUNTERSIGN_WORKER_SHUTDOWN_GRACE", 10.0, validate=Range(min=0))


def _secret(env: FileAwareEnv, name: str, validate: Callable[[str], object]) -> str | None:
    """``name``, or the content of the file ``name_FILE`` names (the convention of the
    official database images, for Docker and Kubernetes secrets); never both."""
    file_variable = f"{name}{env.file_suffix}"
    if os.environ.get(name) and os.environ.get(file_variable):
        raise SettingsError(f"set {name} or {file_variable}, not both")
    try:
        return env.str(name, None, validate=validate)
    except EnvError:
        raise
    except UnicodeDecodeError:  # its message would quote bytes of the secret
        raise _invalid(file_variable, f"{os.environ[file_variable]} is not UTF-8 text") from None
    except (OSError, ValueError):  # the file is missing or unreadable
        raise _invalid(file_variable, f"cannot read {os.environ[file_variable]}") from None


def _unset(**values: object) -> str:
    """The names of the unset values, joined with "and" ("" when all are set)."""
    return " and ".join(name for name, value in values.items() if not value)


def _invalid(name: str, reason: str) -> SettingsError:
    return SettingsError(f'Environment variable "{name}" invalid: {reason}')


def _rate(env: Env, name: str, default: str) -> Rate | None:
    try:
        return Rate.parse(env.str(name, default))
    except ValueError as exc:
        raise _invalid(name, str(exc)) from None


def _networks(env: Env, name: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDR ranges: ``10.0.0.0/8, 2001:db8::/32, 192.0.2.7``."""
    try:
        items: list[str] = env.list(name, [])
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item)
    except ValueError:
        raise _invalid(name, "use comma-separated addresses or CIDR ranges") from None


def _url(*schemes: str) -> Regexp:
    pattern = rf"^({'|'.join(schemes)})://"
    return Regexp(pattern, error=f"must be a URL starting with {' or '.join(schemes)}://")


def _valid_redis_url(value: str) -> None:
    try:
        RedisTarget.parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _valid_smtp_url(value: str) -> None:
    try:
        parse_smtp_url(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _smtp(value: str | None) -> SmtpServer | None:
    return parse_smtp_url(value) if value else None


def _valid_mail_from(value: str) -> None:
    _name, address = parseaddr(value)
    if "@" not in address or "\n" in value or "\r" in value:
        raise ValidationError("must be an address, e.g. Petitions <petitions@example.org>")


def _rstrip_slash(value: str | None) -> str | None:
    return value.rstrip("/") if value else value


def _one_line(message: str) -> str:
    # environs reports "Environment variable "X" invalid: {...}"; keep it readable on one line.
    message = re.sub(r"[\[\]']", "", message)
    return re.sub(r"\s+", " ", message).strip()
