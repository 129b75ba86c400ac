"""A local SMTP server for ``countersign dev``: nothing leaves the machine.

Every email the mail sender delivers is kept as an ``.eml`` file under the data folder,
and each confirmation link in it is announced, since that is what a new user needs to
click.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from uuid import uuid4

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_CONFIRMATION_LINK = re.compile(r"https?://\S+/confirm/[\w.-]+")


def confirmation_links(raw: bytes) -> list[str]:
    """The confirmation links in an email's plain-text part."""
    message = message_from_bytes(raw, policy=policy.default)
    body = message.get_body(("plain",))
    return _CONFIRMATION_LINK.findall(body.get_content()) if body is not None else []


# Called with each confirmation link caught and the file its email is kept in.
Announce = Callable[[str, Path], Awaitable[None]]


class MailCatcher:
    """aiosmtpd handler: accepts everything, keeps it as a file, announces the links."""

    def __init__(self, folder: Path, announce: Announce) -> None:
        self.folder = folder
        self._announce = announce

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        path = self.folder / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid4().hex[:8]}.eml"
        path.write_bytes(raw)
        for link in confirmation_links(raw):
            await self._announce(link, path)
        return "250 Message accepted for delivery"


def start_mail_catcher(folder: Path, announce: Announce) -> tuple[Controller, int]:
    """A catcher on a free loopback port, in a thread of its own; returns it and the port."""
    folder.mkdir(parents=True, exist_ok=True)
    # aiosmtpd narrates every SMTP command at INFO; the links printed are what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return start_smtp_server(MailCatcher(folder, announce))


def start_smtp_server(handler: object) -> tuple[Controller, int]:
    """An aiosmtpd server for ``handler`` on a free loopback port, in a thread."""
    # aiosmtpd's Controller needs the port before it binds (it connects to it to check
    # that it started); the OS picks a free one for us first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port
