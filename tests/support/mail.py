"""A real SMTP server for the tests (aiosmtpd, in the test's event loop) and helpers to
read what it received."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
import warnings
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from countersign_core.settings import Settings

_LINK = re.compile(r"https?://\S+/confirm/[\w.-]+")


class SmtpSink:
    """Accepts (or, on demand, refuses or holds) messages, and keeps what it received.

    ``refuse`` holds replies for the next recipients (e.g. "451 4.3.0 Try again later");
    ``hold_at`` makes the n-th DATA wait, after the message was received and before the
    server answers, until ``release`` is set: a sender killed then never learns that the
    message arrived.
    """

    def __init__(
        self,
        authenticate: tuple[str, str] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.received: list[EmailMessage] = []
        self.refuse: list[str] = []
        self.hold_at: int | None = None
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self._credentials = authenticate
        # With ``tls``: STARTTLS required before any mail, or TLS from the first byte.
        self._tls = tls
        self._implicit_tls = implicit_tls
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, "127.0.0.1", 0, ssl=self._tls if self._implicit_tls else None
        )

    def _protocol(self) -> SMTP:
        authenticate = self._credentials is not None
        with warnings.catch_warnings():
            # AUTH without TLS: aiosmtpd warns, rightly; the tests speak plain SMTP on
            # the loopback interface.
            warnings.simplefilter("ignore", UserWarning)
            return SMTP(
                self,
                hostname="sink.test",
                authenticator=self._authenticator if authenticate else None,
                auth_required=authenticate,
                auth_require_tls=not authenticate,
                auth_exclude_mechanism=["LOGIN"],  # PLAIN is enough, and answers at once
                tls_context=None if self._implicit_tls else self._tls,
                require_starttls=self._tls is not None and not self._implicit_tls,
            )

    async def stop(self) -> None:
        """Stop listening (connections in progress are cut)."""
        self.release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _authenticator(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, auth: object
    ) -> AuthResult:
        ok = isinstance(auth, LoginPassword) and self._credentials == (
            auth.login.decode(),
            auth.password.decode(),
        )
        return AuthResult(success=ok, handled=False)  # the server answers 535 on failure

    async def handle_RCPT(
        self,
        _server: SMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        _options: list[str],
    ) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        self.received.append(parse(envelope.original_content or b""))
        if len(self.received) == self.hold_at:
            self.holding.set()
            await self.release.wait()
        return "250 OK: queued"

    def message_ids(self) -> list[str]:
        return [str(message["Message-ID"]) for message in self.received]


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def confirmation_link(message: EmailMessage) -> str:
    """The one link of the email, read from its plain-text part; the HTML part must
    carry the same one."""
    [link] = set(_LINK.findall(text_part(message)))
    assert link in html_part(message)
    return str(link)


def with_mail(settings: Settings, **changes: Any) -> Settings:
    """The settings with these mail settings changed."""
    return dataclasses.replace(settings, mail=dataclasses.replace(settings.mail, **changes))


TEMPORARY = "451 4.3.0 Try again later"


async def queue_emails(pool: asyncpg.Pool, petition_id: int, n: int) -> list[int]:
    """n pending signatures, each with its first confirmation email queued; job ids."""
    rows = await pool.fetch(
        """WITH signed AS (
               INSERT INTO signatures (petition_id, name, email, email_hash, country,
                                       confirmed_at)
               SELECT $1, 'Signer', 'pending' || g || '@example.org',
                      sha256(('pending' || g)::bytea), 'SY', NULL
               FROM generate_series(1, $2) AS g
               RETURNING id)
           INSERT INTO email_jobs (signature_id, sequence, language)
           SELECT id, 1, 'en' FROM signed ORDER BY id RETURNING id""",
        petition_id,
        n,
    )
    return sorted(row["id"] for row in rows)
