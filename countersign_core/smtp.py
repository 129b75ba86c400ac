"""``SMTP_URL``: where the mail sender delivers, as one URL.

``smtp://user:password@host:587?starttls=true`` (STARTTLS required), ``smtps://host:465``
(TLS from the first byte), ``smtp://127.0.0.1:1025?starttls=false`` (a local catcher).
Without ``starttls``, an ``smtp://`` connection is upgraded when the server offers it.
``timeout`` (seconds, default 30) bounds each exchange with the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from yarl import URL

DEFAULT_TIMEOUT = 30.0
_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    use_tls: bool
    # True: STARTTLS or fail; False: never; None: when the server offers it.
    start_tls: bool | None
    username: str | None
    password: str | None = field(repr=False)
    timeout: float


def parse_smtp_url(value: str) -> SmtpServer:
    """The server the URL names; ValueError (with a message fit to print) otherwise."""
    try:
        url = URL(value)
    except ValueError:
        raise ValueError("not a URL") from None
    if url.scheme not in ("smtp", "smtps"):
        raise ValueError("must start with smtp:// or smtps://")
    if not url.host:
        raise ValueError("names no host")
    unknown = set(url.query) - {"starttls", "timeout"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]}")
    start_tls = _boolean(url.query.get("starttls"))
    if url.scheme == "smtps" and start_tls is not None:
        raise ValueError("starttls does not apply to smtps:// (TLS from the start)")
    try:
        timeout = float(url.query.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise ValueError("timeout must be a number of seconds") from None
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    use_tls = url.scheme == "smtps"
    default_port = 465 if use_tls else 587 if start_tls else 25
    return SmtpServer(
        host=url.host,
        port=url.explicit_port or default_port,
        use_tls=use_tls,
        start_tls=start_tls,
        username=url.user,
        password=url.password,
        timeout=timeout,
    )


def _boolean(value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() not in _BOOLEANS:
        raise ValueError("starttls must be true or false")
    return _BOOLEANS[value.lower()]
