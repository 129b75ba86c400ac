"""The emails: a plain-text and an HTML part each, in the reader's language.

The confirmation email carries the petition's title, the link and the privacy notice (who
holds the data, where the policy is), and nothing the signer typed: not even their name,
so that nobody can use the form to send chosen words to someone else. The staff sign-in
email carries the one-time link to the console and nothing else either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.header import Header
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, parseaddr

import asyncpg
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from countersign_core.settings import MailDelivery, PrivacyConfig
from countersign_core.texts import TextCatalog, Texts
from countersign_domain.confirmation_tokens import ConfirmationRef, ConfirmationTokens
from countersign_domain.petitions import PrivacyNotice
from countersign_domain.sessions import sign_in_secret


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
    kind: str  # 'confirmation' or 'staff_sign_in'
    signature_id: int | None  # a confirmation's, and its petition's id and title
    # The partner's submission the email confirms (with the signature, if pending).
    submission_id: int | None
    petition_id: int | None
    email: str
    title: str | None
    # The petition's own privacy notice, if it has one.
    data_controller: str | None
    privacy_policy_url: str | None
    # The title's language: the job's, or the petition's default if not translated.
    title_lang: str | None
    sign_in_nonce: bytes | None  # a sign-in link's
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
        privacy: PrivacyConfig,
        *,
        link_days: int,
        console_catalog: TextCatalog,
        secret_key: str,
        sign_in_minutes: int,
    ) -> None:
        self._catalog = catalog
        self._console_catalog = console_catalog
        self._secret_key = secret_key
        self._sign_in_minutes = sign_in_minutes
        self._privacy = privacy
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

    def message(self, job: ClaimedJob) -> EmailMessage:
        if job.kind == "staff_sign_in":
            return self.sign_in(job)
        return self.confirmation(job)

    def confirmation(self, job: ClaimedJob) -> EmailMessage:
        assert job.signature_id is not None
        assert job.petition_id is not None
        texts = self._catalog.get(job.language)
        token = self._tokens.make(
            ConfirmationRef(job.signature_id, job.petition_id, job.submission_id)
        )
        context = {
            "t": texts,
            "title": job.title,
            "title_lang": job.title_lang,
            "days": self._link_days,
            "link": f"{self._public_url}/confirm/{token}",
            "privacy": PrivacyNotice.of(self._privacy, job.data_controller, job.privacy_policy_url),
        }
        subject = texts("email_subject", title=job.title)
        return self._compose(job, texts, "confirmation", subject, context)

    def sign_in(self, job: ClaimedJob) -> EmailMessage:
        assert job.sign_in_nonce is not None
        texts = self._console_catalog.get(job.language)
        secret = sign_in_secret(self._secret_key, job.sign_in_nonce)
        context = {
            "t": texts,
            "minutes": self._sign_in_minutes,
            "link": f"{self._public_url}/admin/sign-in/{secret}",
        }
        return self._compose(job, texts, "sign_in", texts("email_subject"), context)

    def _compose(
        self,
        job: ClaimedJob,
        texts: Texts,
        template: str,
        subject: str,
        context: Mapping[str, object],
    ) -> EmailMessage:
        message = EmailMessage(policy=MESSAGE_POLICY)
        message["From"] = self._mail_from
        message["To"] = job.email
        # One line, whatever the title holds: a header cannot break.
        message["Subject"] = " ".join(subject.split())
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = job.message_id
        # Tells auto-responders (holiday replies) not to answer.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self._env.get_template(f"{template}.txt").render(context))
        message.add_alternative(
            self._env.get_template(f"{template}.html").render(context), subtype="html"
        )
        message["Content-Language"] = texts.language  # after the parts: set_content drops it
        return message
