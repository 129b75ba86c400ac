"""Settings from environment variables, read once at start-up.

Every variable is listed in the README's configuration table. A missing or malformed
value raises SettingsError, whose message is one line fit to print as it is.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from environs import Env, EnvError
from marshmallow import ValidationError
from marshmallow.validate import Length, OneOf, Range, Regexp

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
    counts_cache_ms: int
    worker_batch_size: int
    worker_poll_interval: float
    worker_lease_ms: int
    worker_shutdown_grace: float
    # Longest a signatures export may stream before it is cut (slow clients, huge files).
    export_timeout: float
    # Test seam: the worker stops itself (SIGSTOP) the first time it reaches this point,
    # so the fault tests can kill or freeze it at an exact step of the counter protocol.
    worker_stop_at: str | None
    # Confirmation by email (double opt-in) and the mail sender.
    public_url: str | None
    smtp: SmtpServer | None
    mail_from: str | None
    texts_dir: Path | None
    confirmation_link_days: int
    confirmation_emails: int
    pending_purge_days: int
    mail_connections: int
    mail_batch_size: int
    mail_poll_interval: float
    mail_lease_seconds: float
    mail_retry_base: float
    mail_max_attempts: int
    live_heartbeat: float
    # None: the API port + 1.
    demo_port: int | None
    # Longest a request waits on Postgres or Redis before it answers 503 (or, for Redis,
    # skips rate limits or serves the last known counts).
    backend_timeout: float
    # X-Forwarded-For is believed only from these peers.
    trusted_proxies: tuple[IPNetwork, ...]
    rate_limit_mode: str
    # Client ranges exempt from the per-address limits (a university behind one NAT).
    rate_limit_allow: tuple[IPNetwork, ...]
    rate_limit_ip_burst: Rate | None
    rate_limit_ip_sustained: Rate | None
    rate_limit_partner: Rate | None
    rate_limit_global: Rate | None
    metrics_host: str
    metrics_port: int | None
    worker_metrics_port: int | None
    # The signature log (README, "A count anyone can verify"): whether the counter
    # worker appends leaves, and the Ed25519 key it signs heads with (PEM or base64 text;
    # None: a key kept in the data folder).
    signature_log: bool = True
    log_signing_key: str | None = None

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

    def require_mail(self) -> tuple[SmtpServer, str, str]:
        """The SMTP server, from-address and public URL, for the mail sender."""
        missing = [
            name
            for name, value in (
                ("SMTP_URL", self.smtp),
                ("COUNTERSIGN_MAIL_FROM", self.mail_from),
                ("COUNTERSIGN_PUBLIC_URL", self.public_url),
            )
            if not value
        ]
        if missing:
            raise SettingsError(f"{' and '.join(missing)} must be set to send email")
        assert self.smtp
        assert self.mail_from
        assert self.public_url
        if self.mail_lease_seconds < 3 * self.smtp.timeout:
            raise SettingsError(
                "COUNTERSIGN_MAIL_LEASE_SECONDS must be at least 3 times the SMTP timeout"
            )
        return self.smtp, self.mail_from, self.public_url


STOP_POINTS = ("after_claim", "after_apply", "rebuild_before_write", "log_before_commit")
RATE_LIMIT_MODES = ("flag", "reject")


def load_settings() -> Settings:
    env = Env(expand_vars=False)
    try:
        settings = Settings(
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
            counts_cache_ms=env.int(
                "COUNTERSIGN_COUNTS_CACHE_MS", 100, validate=Range(min=0, max=10_000)
            ),
            worker_batch_size=env.int("COUNTERSIGN_WORKER_BATCH_SIZE", 5000, validate=Range(min=1)),
            worker_poll_interval=env.float(
                "COUNTERSIGN_WORKER_POLL_INTERVAL", 1.0, validate=Range(min=0.01)
            ),
            worker_lease_ms=env.int("COUNTERSIGN_WORKER_LEASE_MS", 10_000, validate=Range(min=100)),
            worker_shutdown_grace=env.float(
                "COUNTERSIGN_WORKER_SHUTDOWN_GRACE", 10.0, validate=Range(min=0)
            ),
            export_timeout=env.float("COUNTERSIGN_EXPORT_TIMEOUT", 3600.0, validate=Range(min=1)),
            worker_stop_at=env.str("COUNTERSIGN_WORKER_STOP_AT", None, validate=OneOf(STOP_POINTS)),
            public_url=_rstrip_slash(
                env.str("COUNTERSIGN_PUBLIC_URL", None, validate=_url("http", "https"))
            ),
            smtp=_smtp(env.str("SMTP_URL", None, validate=_valid_smtp_url)),
            mail_from=env.str("COUNTERSIGN_MAIL_FROM", None, validate=_valid_mail_from),
            texts_dir=env.path("COUNTERSIGN_TEXTS_DIR", None),
            confirmation_link_days=env.int(
                "COUNTERSIGN_CONFIRMATION_LINK_DAYS", 7, validate=Range(min=1, max=365)
            ),
            confirmation_emails=env.int(
                "COUNTERSIGN_CONFIRMATION_EMAILS", 3, validate=Range(min=1, max=20)
            ),
            pending_purge_days=env.int(
                "COUNTERSIGN_PENDING_PURGE_DAYS", 14, validate=Range(min=1, max=3650)
            ),
            mail_connections=env.int("COUNTERSIGN_MAIL_CONNECTIONS", 2, validate=Range(1, 64)),
            mail_batch_size=env.int("COUNTERSIGN_MAIL_BATCH_SIZE", 20, validate=Range(1, 1000)),
            mail_poll_interval=env.float(
                "COUNTERSIGN_MAIL_POLL_INTERVAL", 5.0, validate=Range(min=0.01)
            ),
            mail_lease_seconds=env.float(
                "COUNTERSIGN_MAIL_LEASE_SECONDS", 120.0, validate=Range(min=1)
            ),
            mail_retry_base=env.float("COUNTERSIGN_MAIL_RETRY_BASE", 30.0, validate=Range(min=0)),
            mail_max_attempts=env.int(
                "COUNTERSIGN_MAIL_MAX_ATTEMPTS", 8, validate=Range(min=1, max=100)
            ),
            live_heartbeat=env.float(
                "COUNTERSIGN_LIVE_HEARTBEAT", 15.0, validate=Range(min=0.1, max=300)
            ),
            demo_port=env.int("COUNTERSIGN_DEMO_PORT", None, validate=Range(min=1, max=65535)),
            backend_timeout=env.float(
                "COUNTERSIGN_BACKEND_TIMEOUT", 1.0, validate=Range(min=0.05, max=60)
            ),
            trusted_proxies=_networks(env, "COUNTERSIGN_TRUSTED_PROXIES"),
            rate_limit_mode=env.str(
                "COUNTERSIGN_RATE_LIMIT_MODE", "flag", validate=OneOf(RATE_LIMIT_MODES)
            ),
            rate_limit_allow=_networks(env, "COUNTERSIGN_RATE_LIMIT_ALLOW"),
            rate_limit_ip_burst=_rate(env, "COUNTERSIGN_RATE_LIMIT_IP_BURST", "10/60"),
            rate_limit_ip_sustained=_rate(env, "COUNTERSIGN_RATE_LIMIT_IP_SUSTAINED", "100/86400"),
            rate_limit_partner=_rate(env, "COUNTERSIGN_RATE_LIMIT_PARTNER", "600/60"),
            rate_limit_global=_rate(env, "COUNTERSIGN_RATE_LIMIT_GLOBAL", "5000/1"),
            metrics_host=env.str("COUNTERSIGN_METRICS_HOST", "127.0.0.1"),
            metrics_port=env.int(
                "COUNTERSIGN_METRICS_PORT", None, validate=Range(min=1, max=65535)
            ),
            worker_metrics_port=env.int(
                "COUNTERSIGN_WORKER_METRICS_PORT", None, validate=Range(min=1, max=65535)
            ),
            signature_log=env.bool("COUNTERSIGN_SIGNATURE_LOG", True),
            log_signing_key=_value_or_file(env, "COUNTERSIGN_LOG_SIGNING_KEY"),
        )
    except EnvError as exc:
        raise SettingsError(_one_line(str(exc))) from None
    if settings.pending_purge_days < settings.confirmation_link_days:
        # A link must not outlive the signature it confirms.
        raise SettingsError(
            "COUNTERSIGN_PENDING_PURGE_DAYS must be at least COUNTERSIGN_CONFIRMATION_LINK_DAYS"
        )
    return settings


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


def _value_or_file(env: Env, name: str) -> str | None:
    """A secret given as ``NAME``, or as a file named by ``NAME_FILE`` (container
    secrets); never both."""
    value, path = env.str(name, None), env.path(f"{name}_FILE", None)
    if value and path:
        raise _invalid(name, f"set {name} or {name}_FILE, not both")
    if path is None:
        return value
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(f"{name}_FILE", f"cannot read it ({type(exc).__name__})") from None


def _url(*schemes: str) -> Regexp:
    pattern = rf"^({'|'.join(schemes)})://"
    return Regexp(pattern, error=f"must be a URL starting with {' or '.join(schemes)}://")


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
