"""The confirmation email: a plain-text and an HTML part, in the signer's language.

It carries the petition's title and the link, and nothing the signer typed: not even
their name, so that nobody can use the form to send chosen words to someone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.header import Header
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, parseaddr

import asyncpg
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from countersign_core.settings import MailDelivery
from countersign_core.texts import TextCatalog
from countersign_domain.confirmation_tokens import ConfirmationRef, ConfirmationTokens


class EncodedWordsSubject(UnstructuredHeader, BaseHeader):
    """A Subject folded by ``email.header.Header``, which keeps every space inside its
    encoded words.

    The standard library's folding of a non-ASCII subject (Python 3.11 to 3.13) can put
    the space between two words outside the encoded words, where RFC 2047 says it is
    ignored: "Передайте дело" then decodes as "Передайтедело" in every mail client.
    """

    def fold(self, *, policy: Policy) -> str:
        text = str(self)
        header = Header(text, "us-ascii" if text.isascii() else "utf-8", header_name=self.name)
        return f"{self.name}: {header.encode(linesep=policy.linesep)}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("subject", EncodedWordsSubject)
# How the message's headers are built (the SMTP client serialises it with its own
# policy; the Subject folds itself).
MESSAGE_POLICY = policy.default.clone(header_factory=_HEADERS)


@dataclass(frozen=True)
class ClaimedJob:
    """An email job a sender holds, with what the email needs."""

    id: int
    signature_id: int
    petition_id: int
    email: str
    title: str
    # The title's language: the job's, or the petition's default if not translated.
    title_lang: str
    language: str
    message_id: str
    # This claim's number: outcomes are recorded only while no other claim followed it.
    attempts: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ClaimedJob:
        return cls(**dict(row))


def message_domain(mail_from: str) -> str:
    """The from-address's domain: the right-hand side of our Message-IDs."""
    return parseaddr(mail_from)[1].rpartition("@")[2]


class Composer:
    def __init__(
        self,
        catalog: TextCatalog,
        tokens: ConfirmationTokens,
        delivery: MailDelivery,
        *,
        link_days: int,
    ) -> None:
        self._catalog = catalog
        self._tokens = tokens
        self._public_url = delivery.public_url
        self._mail_from = delivery.mail_from
        self._link_days = link_days
        self._env = Environment(
            loader=PackageLoader("mail_sender", "templates"),
            autoescape=select_autoescape(("html",)),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def confirmation(self, job: ClaimedJob) -> EmailMessage:
        texts = self._catalog.get(job.language)
        token = self._tokens.make(ConfirmationRef(job.signature_id, job.petition_id))
        context = {
            "t": texts,
            "title": job.title,
            "title_lang": job.title_lang,
            "days": self._link_days,
            "link": f"{self._public_url}/confirm/{token}",
        }
        message = EmailMessage(policy=MESSAGE_POLICY)
        message["From"] = self._mail_from
        message["To"] = job.email
        # One line, whatever the title holds: a header cannot break.
        message["Subject"] = " ".join(texts("email_subject", title=job.title).split())
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = job.message_id
        # Tells auto-responders (holiday replies) not to answer.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self._env.get_template("confirmation.txt").render(context))
        message.add_alternative(
            self._env.get_template("confirmation.html").render(context), subtype="html"
        )
        message["Content-Language"] = texts.language  # after the parts: set_content drops it
        return message
