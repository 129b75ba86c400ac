"""Recording signatures: identity hashing and the batching writer.

Requests that arrive while an INSERT is in flight are written together by the next one:
one statement, one transaction, one trigger run, one NOTIFY for up to ``max_batch``
signatures. Under light load a batch is a single signature and adds no delay.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Literal

import asyncpg
import idna
from prometheus_client import Counter

from countersign_core.batching import Batcher, wait_within
from countersign_core.connections import TRANSIENT_ERRORS, within

log = logging.getLogger("countersign_domain.signatures")

SIGNATURES = Counter(
    "countersign_signatures",
    "Signature submissions. outcome: accepted (stored, counts), duplicate (the address had "
    "signed already), suspect (stored, not counted; reason says why) or rejected (reason is "
    "the error code, or honeypot).",
    ["outcome", "reason"],
)


def count_signature(outcome: str, reason: str = "") -> None:
    _signatures_of(outcome, reason).inc()


@functools.lru_cache(maxsize=256)  # outcomes and reasons are a short list of words
def _signatures_of(outcome: str, reason: str) -> Counter:
    """The counter of one outcome and reason: looked up once, not per signature."""
    return SIGNATURES.labels(outcome=outcome, reason=reason)


_GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


@functools.lru_cache(maxsize=4096)  # a pure function; signers' domains repeat a lot
def canonical_domain(domain: str) -> str:
    """The domain as DNS sees it: IDNA 2008 with the UTS #46 mapping (case, full-width
    forms and ignored characters such as the soft hyphen folded), in its ASCII form, so
    that ``bücher.example`` and ``xn--bcher-kva.example`` are one domain."""
    domain = domain.rstrip(".")
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        # Not a name IDNA allows (it cannot receive mail): the mapping alone, so that
        # its case and width variants still meet.
        try:
            return idna.uts46_remap(domain, std3_rules=False, transitional=False)
        except idna.IDNAError:
            return domain.lower()


def canonical_email(email: str) -> str:
    """The address as a mailbox, for duplicate detection: surrounding spaces and case
    ignored, the local part in Unicode NFC (``josé`` composed or not), the domain as
    ``canonical_domain`` gives it, ``+tags`` dropped, and for Gmail the dots that Gmail
    itself ignores."""
    local, _, domain = email.strip().rpartition("@")
    local = unicodedata.normalize("NFC", local.lower())
    domain = canonical_domain(domain)
    if domain in _GMAIL_DOMAINS:
        domain = "gmail.com"
        local = local.replace(".", "")
    untagged = local.split("+", 1)[0]
    return f"{untagged or local}@{domain}"


class Hasher:
    """Keyed hashes (HMAC-SHA256) of personal identifiers, each purpose with its own key,
    so a table of hashed emails cannot be matched against a table of hashed IPs."""

    def __init__(self, secret_key: str) -> None:
        secret = secret_key.encode()
        self._email_key = hmac.digest(secret, b"countersign email v1", hashlib.sha256)
        self._ip_key = hmac.digest(secret, b"countersign ip v1", hashlib.sha256)
        self._limit_key = hmac.digest(secret, b"countersign rate limit v1", hashlib.sha256)

    def email(self, email: str) -> bytes:
        return hmac.digest(self._email_key, canonical_email(email).encode(), hashlib.sha256)

    # A client address under the secret key alone is never stored nor sent to Redis:
    # with the key, trying every IPv4 address reverses it in minutes. These are sealed
    # with the day's random key first (countersign_domain.ip_keys.DayKey).

    def ip(self, address: str) -> bytes:
        return hmac.digest(self._ip_key, address.encode(), hashlib.sha256)

    def rate_limit_subject(self, subject: str) -> bytes:
        """What names a client's rate limit keys (an address or an IPv6 /64), unsealed."""
        return hmac.digest(self._limit_key, subject.encode(), hashlib.sha256)


@dataclass(frozen=True)
class NewSignature:
    petition_id: int
    name: str
    email: str
    email_hash: bytes
    country: str
    postal_code: str | None
    source: str | None
    consent_updates: bool
    ip_hash: bytes | None
    # The language of the confirmation email, if the petition asks for one.
    language: str
    # Set by the abuse checks: stored, and not counted until staff release it.
    suspect_reason: str | None = None


# One statement (one transaction) for the whole batch. It inserts the signatures into
# petitions that are open right now, skipping an address already signed (the unique
# index decides, so concurrent requests are safe); the first of an address twice in the
# batch is the one inserted (rows go in ``ord`` order).
#
# Each row then "lands" on a signature: the one it inserted or the one found there. A row
# whose source is a partner's code (its key, or the widget's data-source) records the
# partner's submission of that signature, new or not: partners' figures count these
# (countersign_domain/partners.py), so they move alike whether the address had signed.
#
# On petitions that require confirmation, a row queues at most one email (of $12 per
# signature, and none while one about the same thing waits; the next sequence number is
# unique per signature, so of two concurrent requests for it one does nothing): a
# partner's row, for its submission while that is pending, whatever became of the
# signature; another row, for the signature while pending (with the submission that
# created it, if a partner's did). A suspect row that
# created its signature queues its email held, sent once staff release it; any other
# suspect row, or a row landing on a suspect signature, queues none.
#
# Every batch writes a (transactional, empty) logical message to the WAL, so that its
# commit waits for the flush to disk like one that stored rows: without it, a batch that
# only met addresses already signed commits without a flush and answers milliseconds
# sooner, which tells a prober timing the answer that the address had signed.
#
# Returns the ordinals of the rows whose petition was open, whether it requires
# confirmation, and whether each row was new (for the metrics). Rows this statement
# inserts are invisible to its own reads of tables, so a new signature is never also
# taken for one found there.
INSERT_BATCH = """
WITH input AS (
    SELECT * FROM unnest(
        $1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::text[],
        $6::text[], $7::text[], $8::boolean[], $9::bytea[], $10::text[], $11::text[]
    ) WITH ORDINALITY AS i(petition_id, name, email, email_hash, country, postal_code,
                           source, consent_updates, ip_hash, language, suspect_reason, ord)
), accepted AS (
    SELECT input.*, p.require_confirmation, pa.id AS partner_id
    FROM input
    JOIN petitions p ON p.id = input.petition_id
    LEFT JOIN partners pa ON pa.source_code = input.source
    WHERE countersign_petition_open(p)
), inserted AS (
    INSERT INTO signatures (petition_id, name, email, email_hash, country, postal_code,
                            source, consent_updates, ip_hash, suspect_reason, confirmed_at)
    SELECT petition_id, name, email, email_hash, country, postal_code,
           source, consent_updates, ip_hash, suspect_reason,
           CASE WHEN require_confirmation THEN NULL ELSE now() END
    FROM accepted
    ORDER BY ord
    ON CONFLICT (petition_id, email_hash) DO NOTHING
    RETURNING id, petition_id, email_hash, confirmed_at
), landed AS (
    -- A row that lost a race with another transaction's insert of its address lands on
    -- none (signature_id NULL): it is answered alike, and records nothing more.
    SELECT a.*, coalesce(i.id, s.id) AS signature_id,
           i.id IS NOT NULL
           AND a.ord = min(a.ord) OVER (PARTITION BY a.petition_id, a.email_hash) AS new,
           coalesce(i.confirmed_at, s.confirmed_at) IS NULL AS signature_pending,
           s.suspect_reason IS NOT NULL AS signature_held
    FROM accepted a
    LEFT JOIN inserted i USING (petition_id, email_hash)
    -- LATERAL: one unique-index look-up per row. A plain join lets the planner, which
    -- cannot see how few rows the batch holds, hash the whole table on every batch.
    LEFT JOIN LATERAL (
        SELECT s.id, s.confirmed_at, s.suspect_reason FROM signatures s
        WHERE s.petition_id = a.petition_id AND s.email_hash = a.email_hash
    ) s ON true
), new_submissions AS (
    INSERT INTO partner_submissions (partner_id, signature_id, created_signature, confirmed_at)
    SELECT DISTINCT ON (partner_id, signature_id) partner_id, signature_id, new,
           CASE WHEN require_confirmation THEN NULL ELSE now() END
    FROM landed
    WHERE partner_id IS NOT NULL AND signature_id IS NOT NULL
    ORDER BY partner_id, signature_id, ord
    ON CONFLICT (partner_id, signature_id) DO NOTHING
    RETURNING id, partner_id, signature_id
), to_confirm AS (
    SELECT l.signature_id, l.ord, l.language,
           CASE WHEN l.partner_id IS NULL
                THEN countersign_creating_submission(l.signature_id)
                ELSE coalesce(ns.id, ps.id) END AS submission_id,
           l.suspect_reason IS NOT NULL AS held
    FROM landed l
    LEFT JOIN new_submissions ns USING (partner_id, signature_id)
    LEFT JOIN LATERAL (
        SELECT ps.id, ps.confirmed_at FROM partner_submissions ps
        WHERE ps.partner_id = l.partner_id AND ps.signature_id = l.signature_id
    ) ps ON true
    WHERE l.require_confirmation AND l.signature_id IS NOT NULL AND NOT l.signature_held
      AND (l.suspect_reason IS NULL OR l.new)
      AND CASE WHEN l.partner_id IS NULL THEN l.signature_pending
               ELSE ns.id IS NOT NULL OR (ps.id IS NOT NULL AND ps.confirmed_at IS NULL) END
), emails AS (
    INSERT INTO email_jobs (signature_id, sequence, language, submission_id, held)
    SELECT DISTINCT ON (c.signature_id) c.signature_id, so_far.queued + 1, c.language,
           c.submission_id, c.held
    FROM to_confirm c
    CROSS JOIN LATERAL countersign_confirmation_emails(c.signature_id) AS so_far
    WHERE so_far.queued < $12
      AND NOT EXISTS (
          SELECT 1 FROM email_jobs w
          WHERE w.signature_id = c.signature_id AND w.sent_at IS NULL AND w.failed_at IS NULL
            AND w.submission_id IS NOT DISTINCT FROM c.submission_id
      )
    ORDER BY c.signature_id, c.ord
    ON CONFLICT (signature_id, kind, sequence) DO NOTHING
), flushed AS (
    SELECT pg_logical_emit_message(true, 'countersign', 'signatures') AS lsn
)
SELECT ord, require_confirmation, new FROM landed CROSS JOIN flushed
"""

SignStatus = Literal["counted", "pending_confirmation"]


class BackendUnavailable(Exception):
    """Postgres could not be reached; the signature was not recorded."""


@dataclass(frozen=True)
class Written:
    status: SignStatus
    new: bool  # False: the address had signed already


# The columns of INSERT_BATCH's input, in order: what one row of it is made of.
_COLUMNS = attrgetter(*(f.name for f in fields(NewSignature)))


class SignatureWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 500,
        writers: int = 1,
        confirmation_emails: int = 3,
        timeout: float | None = None,
    ) -> None:
        self._pool = pool
        self._confirmation_emails = confirmation_emails
        # Bounds both a caller's wait and each INSERT, so that a hung Postgres means a
        # quick 503, never a hanging request.
        self._timeout = timeout
        # One writer by default: while its INSERT is in flight the next batch gathers,
        # and batches are as large as the load makes them (a statement's fixed cost is
        # most of the cost of a small one).
        self._batcher: Batcher[NewSignature, SignStatus | None] = Batcher(
            self._write_batch, max_batch=max_batch, tasks=writers
        )
        # Connections kept from one batch to the next: the pool resets a connection it
        # gets back (a round trip), and the writer leaves no session state to reset.
        self._held: list[asyncpg.Connection] = []

    async def write(self, signature: NewSignature) -> SignStatus | None:
        """Record a signature. Once it is committed (or the address had already signed):
        "counted", or "pending_confirmation" if the petition requires confirmation.
        None if the petition is not open. Raises BackendUnavailable, also when no answer
        comes within the timeout (the signature may still be written: a retry then finds
        it, as a duplicate)."""
        try:
            # Shielded: a client hanging up must not take a half-written batch with it.
            return await wait_within(self._batcher.submit(signature), self._timeout)
        except TimeoutError:
            raise BackendUnavailable() from None

    async def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        if left := await self._batcher.close(timeout):
            log.warning("signature writer closed with %d queued", left)
        while self._held:
            await self._pool.release(self._held.pop())

    async def _write_batch(
        self, batch: Sequence[NewSignature]
    ) -> list[SignStatus | BaseException | None]:
        try:
            accepted = await self._insert(batch)
        except TRANSIENT_ERRORS as exc:
            log.warning("could not record %d signatures: %s", len(batch), type(exc).__name__)
            return [BackendUnavailable() for _ in batch]
        except Exception as exc:
            if len(batch) > 1:
                # One bad row must not fail the others: write them one by one.
                return [outcome for one in batch for outcome in await self._write_batch([one])]
            return [exc]
        outcomes: list[SignStatus | BaseException | None] = []
        for ordinal, signature in enumerate(batch, start=1):
            written = accepted.get(ordinal)
            if written is not None:
                _count(signature, new=written.new)
            outcomes.append(written.status if written else None)
        return outcomes

    async def _insert(self, signatures: Sequence[NewSignature]) -> dict[int, Written]:
        """Ordinals of the signatures whose petition was open -> what became of each."""
        columns = list(zip(*map(_COLUMNS, signatures), strict=True))

        async def insert() -> list[asyncpg.Record]:
            conn = self._held.pop() if self._held else await self._pool.acquire()
            try:
                rows: list[asyncpg.Record] = await conn.fetch(
                    INSERT_BATCH, *columns, self._confirmation_emails
                )
            except BaseException:
                await self._pool.release(conn)  # reset, or dropped if it broke
                raise
            self._held.append(conn)
            return rows

        # within: past the timeout the insert's own clean-up (a cancel request to a server
        # that may not answer) goes on without this batch waiting for it.
        rows = await within(self._timeout, insert())
        return {
            row["ord"]: Written(
                "pending_confirmation" if row["require_confirmation"] else "counted", row["new"]
            )
            for row in rows
        }


def _count(signature: NewSignature, *, new: bool) -> None:
    if not new:
        count_signature("duplicate")
    elif signature.suspect_reason:
        count_signature("suspect", signature.suspect_reason)
    else:
        count_signature("accepted")
