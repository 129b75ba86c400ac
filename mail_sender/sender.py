"""The mail sender: delivers queued email jobs over SMTP.

The API writes a job in the same transaction as the signature it is about; mail is never
sent inside a request. Each of a sender's connections (lanes) repeats:

1. Claim: one statement takes a batch of due jobs (``FOR UPDATE SKIP LOCKED``: several
   senders share the queue) and moves their ``next_attempt_at`` to the end of a lease. A
   sender that dies holding a batch loses nothing: its jobs come due again then.
2. Send, one message at a time over one SMTP connection, and record each outcome as
   soon as the server has answered: sent; retried later (4xx replies, lost connections:
   the delay doubles from ``retry_base`` on each attempt); or failed (the server refused
   the recipient or the message with a 5xx, or too many attempts).
3. A message is started only if it can finish well within the lease, so the jobs of a
   live sender are never taken over; the rest of the batch is given back.

Two ceilings bound what goes out, so that nobody can make the service flood an inbox, or
the relay: claims take no more than the room left under the global one
(``COUNTERSIGN_MAIL_LIMIT_GLOBAL``: emails sent in its window and in flight, claims
serialised by an advisory lock), and a job whose recipient address had as many emails as
the per-address one allows (``COUNTERSIGN_MAIL_LIMIT_ADDRESS``, every petition together)
waits until the window has room. A suspect signature's email is held until staff
release it. The gauge ``countersign_mail_held_back`` counts all three.

A second copy of an email can only go out when a sender dies (or its connection drops)
after the server accepted the message and before the record; the copy carries the same
Message-ID, set at the job's first claim, so mail systems can drop it.

Wakes on NOTIFY when jobs are queued, and polls every ``poll_interval`` for retries that
come due. Every hour it also purges pending signatures nobody confirmed in time. Its
heartbeat and its queue gauges are written from that same polling loop.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

import aiosmtplib
import asyncpg

from countersign_core.connections import TRANSIENT_ERRORS
from countersign_core.heartbeats import Heartbeat, process_name
from countersign_core.settings import MailConfig, MailDelivery
from countersign_core.status import emails_due
from countersign_domain.housekeeping import purge_unconfirmed
from mail_sender import metrics, queries
from mail_sender.messages import ClaimedJob, Composer, message_domain

log = logging.getLogger("mail_sender")

NOTIFY_CHANNEL = "countersign_mail"
MAX_RETRY_DELAY = 3600.0
PURGE_INTERVAL = 3600.0

# The connection (or the server) failed: whatever was in hand is tried again later.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiosmtplib.SMTPException,
    *TRANSIENT_ERRORS,
)


@dataclass(frozen=True)
class Refusal:
    """The server's answer to one message, when it was not "accepted"."""

    code: str
    permanent: bool


def refusal(exc: Exception) -> Refusal | None:
    """What a failure to send a message says about that message; None when it says
    nothing about it (the connection or the server is at fault)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = exc.recipients[0].code
        return Refusal(str(code), code >= 500)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return Refusal(str(exc.code), exc.code >= 500)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # Our from-address: a configuration matter, not this message's. Retried.
        return Refusal(str(exc.code), False)
    if isinstance(exc, aiosmtplib.SMTPNotSupported | ValueError):
        # An address this server cannot take (e.g. non-ASCII without SMTPUTF8).
        return Refusal("unsupported_address", True)
    return None


class MailSender:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        composer: Composer,
        delivery: MailDelivery,
        config: MailConfig,
        *,
        purge_days: int,
        heartbeat_interval: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.pool = pool
        self.smtp = delivery.smtp
        self.composer = composer
        self.message_domain = message_domain(delivery.mail_from)
        self.connections = config.connections
        self.batch_size = config.batch_size
        self.lease_seconds = config.lease_seconds
        self.retry_base = config.retry_base
        self.max_attempts = config.max_attempts
        self.poll_interval = config.poll_interval
        self.purge_days = purge_days
        self.address_limit = config.address_limit
        self.global_limit = config.global_limit
        self.heartbeat = Heartbeat("mail_sender", process_name(), interval=heartbeat_interval)

    # -- one batch ------------------------------------------------------------------------

    async def send_due(self, stopping: asyncio.Event | None = None) -> int:
        """Claim a batch of due jobs and deliver it. Returns how many were claimed."""
        loop = asyncio.get_running_loop()
        jobs = await self._claim()
        # Start no message that might still be in flight when the lease ends.
        last_start = loop.time() + self.lease_seconds - 2 * self.smtp.timeout
        client: aiosmtplib.SMTP | None = None
        try:
            for index, job in enumerate(jobs):
                if (stopping is not None and stopping.is_set()) or loop.time() > last_start:
                    await self._release(jobs[index:])
                    break
                try:
                    client = client or await self._connect()
                except _CONNECTION_ERRORS as exc:
                    await self._connection_failed(jobs[index:], exc)
                    break
                try:
                    await client.send_message(self.composer.message(job))
                except Exception as exc:
                    answer = refusal(exc)
                    if answer is None and isinstance(exc, _CONNECTION_ERRORS):
                        await self._connection_failed(jobs[index:], exc)
                        client = None
                        break
                    await self._record_refusal(job, answer or _unexpected(job, exc))
                    if not client.is_connected:
                        client = None
                else:
                    await self.pool.execute(queries.MARK_SENT, job.id)
                    metrics.SENT.inc()
                    log.debug("email job %s sent", job.id)
        finally:
            if client is not None:
                with suppress(*_CONNECTION_ERRORS):
                    await client.quit()
        return len(jobs)

    async def _claim(self) -> list[ClaimedJob]:
        """A batch of due jobs, as many as the global ceiling leaves room for."""
        address = self.address_limit
        async with self.pool.acquire() as conn, conn.transaction():
            room = self.batch_size
            if self.global_limit is not None:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", queries.CLAIM_LOCK)
                room = min(room, await self._global_room(conn))
                if room == 0:
                    return []
            rows = await conn.fetch(
                queries.CLAIM,
                room,
                self.lease_seconds,
                self.message_domain,
                address.count if address else None,
                address.seconds if address else 0,
            )
        return [ClaimedJob.from_row(row) for row in rows]

    async def _global_room(self, conn: asyncpg.Connection) -> int:
        """How many more emails the global ceiling allows now (none set: the batch)."""
        if self.global_limit is None:
            return self.batch_size
        used: int = await conn.fetchval(queries.SENT_OR_IN_FLIGHT, self.global_limit.seconds)
        return max(0, self.global_limit.count - used)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.smtp.host,
            port=self.smtp.port,
            use_tls=self.smtp.use_tls,
            start_tls=self.smtp.start_tls,
            username=self.smtp.username,
            password=self.smtp.password,
            timeout=self.smtp.timeout,
        )
        await client.connect()
        return client

    async def _connection_failed(self, unsent: Sequence[ClaimedJob], exc: BaseException) -> None:
        """The connection could not be made or was lost (or the server refused our
        login or TLS): every message in hand is retried later."""
        code = str(exc.code) if isinstance(exc, aiosmtplib.SMTPResponseException) else "connection"
        log.warning(
            "SMTP connection failed (%s, %s); %d email(s) will be retried",
            type(exc).__name__,
            code,
            len(unsent),
        )
        for job in unsent:
            await self._retry_or_fail(job, code)

    async def _record_refusal(self, job: ClaimedJob, answer: Refusal) -> None:
        if answer.permanent:
            log.warning("email job %s refused for good (SMTP %s)", job.id, answer.code)
            await self.pool.execute(queries.MARK_FAILED, job.id, job.attempts, answer.code)
            metrics.FAILED.inc()
        else:
            log.info("email job %s deferred (SMTP %s)", job.id, answer.code)
            await self._retry_or_fail(job, answer.code)

    async def _retry_or_fail(self, job: ClaimedJob, code: str) -> None:
        if job.attempts >= self.max_attempts:
            log.warning("email job %s failed after %d attempts (%s)", job.id, job.attempts, code)
            await self.pool.execute(queries.MARK_FAILED, job.id, job.attempts, code)
            metrics.FAILED.inc()
            return
        delay = retry_delay(job.attempts, self.retry_base)
        await self.pool.execute(queries.RETRY_LATER, job.id, job.attempts, delay, code)
        metrics.RETRIED.inc()

    async def _release(self, jobs: Sequence[ClaimedJob]) -> None:
        await self.pool.execute(
            queries.RELEASE, [job.id for job in jobs], [job.attempts for job in jobs]
        )

    # -- the loop -------------------------------------------------------------------------

    async def drain(self) -> None:
        """Burst mode: send until no job is due."""
        while await self.send_due():
            pass

    async def measure_queue(self) -> None:
        """Set the queue gauges: how many jobs are due, since when, and how many are held
        back."""
        due = await emails_due(self.pool)
        metrics.DUE.set(due.count)
        metrics.OLDEST_DUE_AGE.set(due.oldest_age or 0.0)
        async with self.pool.acquire() as conn:
            held = await conn.fetchrow(queries.HELD_BACK)
            full = await self._global_room(conn) == 0
        metrics.HELD_BACK.labels(reason="suspect").set(held["suspect"])
        metrics.HELD_BACK.labels(reason="address_ceiling").set(held["address_ceiling"])
        metrics.HELD_BACK.labels(reason="global_ceiling").set(due.count if full else 0)

    async def run(self, stopping: asyncio.Event) -> None:
        """Send until ``stopping`` is set; each lane finishes the message in hand first.
        If a lane or the listener fails, the others stop the same way (``run`` sets
        ``stopping``) and the failure is raised."""
        wakes = [asyncio.Event() for _ in range(self.connections)]
        tasks = [asyncio.create_task(self._lane(wake, stopping)) for wake in wakes]
        tasks.append(asyncio.create_task(self._listen_and_purge(wakes, stopping)))
        log.info("mail sender started with %d connection(s)", self.connections)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            stopping.set()
            for wake in wakes:
                wake.set()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        log.info("mail sender stopped")

    async def _lane(self, wake: asyncio.Event, stopping: asyncio.Event) -> None:
        backoff = 0.1
        while not stopping.is_set():
            wake.clear()
            try:
                claimed = await self.send_due(stopping)
                backoff = 0.1
            except TRANSIENT_ERRORS as exc:
                log.warning(
                    "database unavailable (%s); retrying in %.1fs", type(exc).__name__, backoff
                )
                await _wait(wake, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not claimed:
                await _wait(wake, self.poll_interval)

    async def _listen_and_purge(self, wakes: list[asyncio.Event], stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        listener: asyncpg.Connection | None = None
        next_purge = 0.0
        backoff = 0.1
        try:
            while not stopping.is_set():
                try:
                    if listener is None or listener.is_closed():
                        listener = await self._listen(wakes)
                    if loop.time() >= next_purge:
                        if purged := await purge_unconfirmed(self.pool, self.purge_days):
                            log.info("purged %d signature(s) never confirmed", purged)
                        next_purge = loop.time() + PURGE_INTERVAL
                    await self.measure_queue()
                    await self.heartbeat.beat_if_due(self.pool)
                    backoff = 0.1
                except TRANSIENT_ERRORS as exc:
                    log.warning("database unavailable (%s)", type(exc).__name__)
                    listener = None
                    backoff = min(backoff * 2, 5.0)
                poll = min(self.poll_interval, self.heartbeat.interval)
                await _wait(stopping, backoff if listener is None else poll)
        finally:
            for wake in wakes:  # the lanes see ``stopping`` now, not at their next poll
                wake.set()
            if listener is not None:
                with suppress(Exception):
                    await listener.close(timeout=1)
            await self.heartbeat.forget(self.pool)

    async def _listen(self, wakes: list[asyncio.Event]) -> asyncpg.Connection:
        # A connection of its own: LISTEN holds it for the sender's whole life.
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn, timeout=5)

        def notified(*_args: object) -> None:
            for wake in wakes:
                wake.set()

        await conn.add_listener(NOTIFY_CHANNEL, notified)
        notified()  # jobs queued while nobody was listening
        return conn


def _unexpected(job: ClaimedJob, exc: Exception) -> Refusal:
    """A bug, most likely: logged (the type and the frames; a message could quote an
    address) and retried like a deferral, so that one bad job cannot stop the sender."""
    log.error(
        "email job %s: %s\n%s",
        job.id,
        type(exc).__name__,
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return Refusal(type(exc).__name__, False)


def retry_delay(attempts: int, base: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling, capped."""
    return float(min(base * 2 ** (attempts - 1), MAX_RETRY_DELAY))


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
