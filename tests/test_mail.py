"""The mail sender against a real SMTP server: retries, refusals, crashes, several
senders, waking on NOTIFY, and the purge of signatures nobody confirmed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
import trustme
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings, SettingsError
from countersign_core.smtp import SmtpServer, parse_smtp_url
from countersign_core.texts import TextCatalog
from countersign_domain.housekeeping import purge_unconfirmed
from mail_sender.main import build_sender
from mail_sender.sender import MailSender, retry_delay
from tests.support.counts import assert_converges
from tests.support.factories import add_signatures
from tests.support.logs import production_log
from tests.support.mail import TEMPORARY, SmtpSink, queue_emails, with_mail
from tests.support.processes import spawn_worker
from tests.support.waiting import eventually


async def job(pool: asyncpg.Pool, job_id: int) -> asyncpg.Record:
    row: asyncpg.Record = await pool.fetchrow("SELECT * FROM email_jobs WHERE id = $1", job_id)
    return row


def sender_with(settings: Settings, database_url: str, pool: asyncpg.Pool) -> MailSender:
    return build_sender(settings, database_url, pool, TextCatalog.load())


async def let_time_pass(pool: asyncpg.Pool) -> None:
    """Make every unsent job due now: the tests' clock, instead of waiting for it."""
    await pool.execute("UPDATE email_jobs SET next_attempt_at = now() WHERE sent_at IS NULL")


# -- retries and refusals ---------------------------------------------------------------------


async def test_a_server_that_refuses_at_first_gets_the_email_once(
    pool: asyncpg.Pool, confirming_petition_id: int, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    [job_id] = await queue_emails(pool, confirming_petition_id, 1)
    smtp_sink.refuse = [TEMPORARY, TEMPORARY]
    await sender.drain()  # back-off of 0 s here: retried at once, until accepted
    [message] = smtp_sink.received
    row = await job(pool, job_id)
    assert row["sent_at"] is not None
    assert row["attempts"] == 3
    assert row["last_error"] is None
    assert message["Message-ID"] == row["message_id"]


async def test_retries_back_off_and_keep_their_message_id(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    mail_settings: Settings,
    database_url: str,
    smtp_sink: SmtpSink,
) -> None:
    sender = sender_with(with_mail(mail_settings, retry_base=60.0), database_url, pool)
    [job_id] = await queue_emails(pool, confirming_petition_id, 1)
    smtp_sink.refuse = [TEMPORARY, TEMPORARY]
    delays = []
    for attempt in (1, 2):
        await sender.drain()  # one attempt: the job is not due again before its delay
        row = await job(pool, job_id)
        assert (row["attempts"], row["last_error"], row["sent_at"]) == (attempt, "451", None)
        delays.append(
            await pool.fetchval(
                "SELECT extract(epoch FROM next_attempt_at - now()) FROM email_jobs"
            )
        )
        message_id = row["message_id"]
        assert message_id is not None
        await let_time_pass(pool)
    assert 0 < delays[0] <= 60 < delays[1] <= 120  # 60 s, then 120 s (from when recorded)
    await sender.drain()
    [message] = smtp_sink.received
    assert message["Message-ID"] == message_id  # set at the first claim, kept


def test_retry_delays_double_up_to_an_hour() -> None:
    assert [retry_delay(n, 30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(20, 30) == 3600
    assert retry_delay(5, 0) == 0


async def test_a_permanent_refusal_is_recorded_and_not_retried(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    sender: MailSender,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    [job_id] = await queue_emails(pool, confirming_petition_id, 1)
    smtp_sink.refuse = ["550 5.1.1 <pending1@example.org>: no such user"]
    with caplog.at_level(logging.INFO):
        await sender.drain()
        await let_time_pass(pool)
        await sender.drain()
    row = await job(pool, job_id)
    assert (row["attempts"], row["last_error"], row["sent_at"]) == (1, "550", None)
    assert row["failed_at"] is not None
    assert smtp_sink.received == []
    ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("mail_sender"))
    assert "550" in ours
    assert "pending1" not in ours  # never an address in our logs (the test server's may)


async def test_too_many_temporary_failures_end_in_a_recorded_failure(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    mail_settings: Settings,
    database_url: str,
    smtp_sink: SmtpSink,
) -> None:
    sender = sender_with(with_mail(mail_settings, max_attempts=3), database_url, pool)
    [job_id] = await queue_emails(pool, confirming_petition_id, 1)
    smtp_sink.refuse = [TEMPORARY] * 5
    await sender.drain()
    row = await job(pool, job_id)
    assert (row["attempts"], row["last_error"], row["sent_at"]) == (3, "451", None)
    assert row["failed_at"] is not None
    assert smtp_sink.received == []


async def test_an_unreachable_server_delays_the_emails_until_it_is_back(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    mail_settings: Settings,
    database_url: str,
    smtp_sink: SmtpSink,
) -> None:
    await smtp_sink.stop()  # nothing listens on its port any more
    down = with_mail(mail_settings, retry_base=60.0)
    job_ids = await queue_emails(pool, confirming_petition_id, 3)
    with production_log() as out:
        await sender_with(down, database_url, pool).drain()
    for job_id in job_ids:
        row = await job(pool, job_id)
        assert (row["attempts"], row["last_error"], row["sent_at"]) == (1, "connection", None)
    # Its log says so, values and all, as the process writes it.
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert "SMTP connection failed (SMTPConnectError, connection); 3 email(s) will be retried" in (
        messages
    ), messages

    back = SmtpSink()
    await back.start()
    try:
        assert mail_settings.mail.smtp is not None
        moved = dataclasses.replace(mail_settings.mail.smtp, port=back.port)
        await let_time_pass(pool)
        await sender_with(with_mail(down, smtp=moved), database_url, pool).drain()
        assert len(back.received) == 3
    finally:
        await back.stop()


async def test_credentials_from_the_url_are_used(
    pool: asyncpg.Pool, confirming_petition_id: int, mail_settings: Settings, database_url: str
) -> None:
    sink = SmtpSink(authenticate=("countersign", "s3cret:/@"))
    await sink.start()
    try:
        wrong, right = (
            parse_smtp_url(
                f"smtp://countersign:{password}@127.0.0.1:{sink.port}?starttls=false&timeout=5"
            )
            for password in ("nope", "s3cret%3A%2F%40")
        )
        [job_id] = await queue_emails(pool, confirming_petition_id, 1)
        slow = with_mail(mail_settings, retry_base=60.0)
        await sender_with(with_mail(slow, smtp=wrong), database_url, pool).drain()
        assert (await job(pool, job_id))["last_error"] == "535"  # authentication failed
        assert sink.received == []
        await let_time_pass(pool)
        await sender_with(with_mail(slow, smtp=right), database_url, pool).drain()
        assert len(sink.received) == 1
    finally:
        await sink.stop()


@pytest.fixture
def certificate_authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A test CA, trusted by TLS clients of this process (OpenSSL's SSL_CERT_FILE)."""
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return authority


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_tls_as_the_url_asks(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    mail_settings: Settings,
    database_url: str,
    certificate_authority: trustme.CA,
    mode: str,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    sink = SmtpSink(tls=server_context, implicit_tls=mode == "implicit")
    await sink.start()
    try:
        url = {
            "starttls": f"smtp://127.0.0.1:{sink.port}?starttls=true&timeout=5",
            "implicit": f"smtps://127.0.0.1:{sink.port}?timeout=5",
        }[mode]
        slow = with_mail(mail_settings, retry_base=60.0)
        if mode == "starttls":
            # Told not to upgrade, the sender gets no further than the server's demand
            # for STARTTLS: nothing goes out in clear.
            plain = parse_smtp_url(f"smtp://127.0.0.1:{sink.port}?starttls=false&timeout=5")
            [job_id] = await queue_emails(pool, confirming_petition_id, 1)
            await sender_with(with_mail(slow, smtp=plain), database_url, pool).drain()
            assert (await job(pool, job_id))["last_error"] == "530"
            assert sink.received == []
            await let_time_pass(pool)
        else:
            await queue_emails(pool, confirming_petition_id, 1)
        secure = with_mail(slow, smtp=parse_smtp_url(url))
        await sender_with(secure, database_url, pool).drain()
        assert len(sink.received) == 1
    finally:
        await sink.stop()


async def test_a_server_without_starttls_gets_nothing_when_the_url_requires_it(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    mail_settings: Settings,
    database_url: str,
    smtp_sink: SmtpSink,
) -> None:
    required = parse_smtp_url(f"smtp://127.0.0.1:{smtp_sink.port}?starttls=true&timeout=5")
    settings = with_mail(mail_settings, smtp=required, retry_base=60.0)
    [job_id] = await queue_emails(pool, confirming_petition_id, 1)
    await sender_with(settings, database_url, pool).drain()
    row = await job(pool, job_id)
    # A connection failure, retried later; not a verdict on the message.
    assert (row["last_error"], row["failed_at"], row["sent_at"]) == ("connection", None, None)
    assert smtp_sink.received == []


async def test_nothing_is_sent_for_a_signature_confirmed_or_closed_meanwhile(
    pool: asyncpg.Pool, confirming_petition_id: int, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    confirmed, closed = await queue_emails(pool, confirming_petition_id, 2)
    await pool.execute(
        """UPDATE signatures SET confirmed_at = now()
           WHERE id = (SELECT signature_id FROM email_jobs WHERE id = $1)""",
        confirmed,
    )
    await pool.execute("UPDATE petitions SET status = 'closed'")
    await sender.drain()
    assert smtp_sink.received == []
    for job_id in (confirmed, closed):
        row = await job(pool, job_id)
        assert (row["attempts"], row["last_error"], row["sent_at"]) == (
            0,
            "nothing_to_confirm",
            None,
        )


# -- several senders, and waking up --------------------------------------------------------------


async def test_two_senders_share_the_queue_and_send_each_email_once(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    mail_settings: Settings,
    database_url: str,
    smtp_sink: SmtpSink,
) -> None:
    small_batches = with_mail(mail_settings, batch_size=3)
    job_ids = await queue_emails(pool, confirming_petition_id, 40)
    senders = [sender_with(small_batches, database_url, pool) for _ in range(2)]
    await asyncio.gather(*(sender.drain() for sender in senders))
    stored = {row["message_id"] for row in await pool.fetch("SELECT message_id FROM email_jobs")}
    assert sorted(smtp_sink.message_ids()) == sorted(stored)
    assert len(stored) == len(job_ids)
    assert await pool.fetchval("SELECT count(*) FROM email_jobs WHERE sent_at IS NULL") == 0


async def test_a_running_sender_wakes_on_notify_and_purges(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    mail_settings: Settings,
    database_url: str,
    smtp_sink: SmtpSink,
) -> None:
    await add_signatures(pool, confirming_petition_id, 1)
    await pool.execute(
        "UPDATE signatures SET confirmed_at = NULL, created_at = now() - interval '30 days'"
    )
    slow_poll = with_mail(mail_settings, poll_interval=600.0)
    sender = sender_with(slow_poll, database_url, pool)
    stopping = asyncio.Event()
    running = asyncio.create_task(sender.run(stopping))
    try:

        async def listening() -> bool:
            return bool(
                await pool.fetchval(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
                )
            )

        await eventually(listening)
        await queue_emails(pool, confirming_petition_id, 2)

        async def delivered() -> bool:
            return len(smtp_sink.received) == 2

        await eventually(delivered, timeout=10)  # far sooner than the 600 s poll

        async def purged() -> bool:  # the stale pending signature, at start (then hourly)
            return bool(await pool.fetchval("SELECT count(*) FROM signatures") == 2)

        await eventually(purged)
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)


# -- crashes ---------------------------------------------------------------------------------------


async def test_a_sender_killed_mid_batch_loses_no_email_and_resends_only_the_one_in_flight(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    smtp_sink: SmtpSink,
    sender_env: dict[str, str],
    tmp_path: Path,
) -> None:
    job_ids = await queue_emails(pool, confirming_petition_id, 6)
    smtp_sink.hold_at = 3  # the third message arrives, and its sender never hears back
    first = spawn_worker(sender_env, tmp_path / "first.log", module="mail_sender")
    try:
        await eventually(_is_set(smtp_sink.holding))
    finally:
        first.kill()  # SIGKILL: no clean-up of any kind
    smtp_sink.hold_at = None
    smtp_sink.release.set()

    sent_before = [
        r["id"]
        for r in await pool.fetch("SELECT id FROM email_jobs WHERE sent_at IS NOT NULL ORDER BY id")
    ]
    assert sent_before == job_ids[:2]
    in_flight = await job(pool, job_ids[2])
    assert in_flight["sent_at"] is None
    assert in_flight["message_id"] == smtp_sink.received[2]["Message-ID"]
    # The rest of the dead sender's batch stays claimed until its lease (60 s) runs out.
    assert await pool.fetchval(
        """SELECT bool_and(next_attempt_at > now() + interval '30 seconds')
           FROM email_jobs WHERE sent_at IS NULL"""
    )

    # The dead sender's claim runs out (the test moves the clock rather than wait for
    # the lease), and a new sender delivers the rest.
    await let_time_pass(pool)
    second = spawn_worker(sender_env, tmp_path / "second.log", module="mail_sender")
    try:

        async def all_sent() -> bool:
            unsent: int = await pool.fetchval(
                "SELECT count(*) FROM email_jobs WHERE sent_at IS NULL"
            )
            return unsent == 0

        await eventually(all_sent)
        second.signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.proc.wait, 20) == 0
    finally:
        second.kill()

    copies = Counter(smtp_sink.message_ids())
    stored = {row["id"]: row["message_id"] for row in await pool.fetch("SELECT * FROM email_jobs")}
    for job_id in job_ids:
        expected = 2 if job_id == job_ids[2] else 1  # only the one in flight, same Message-ID
        assert copies[stored[job_id]] == expected, (job_id, copies)
    assert sum(copies.values()) == 7
    assert "@example.org" not in first.log() + second.log()  # no address in the logs


async def test_sigterm_lets_the_sender_finish_its_message_then_exit_0(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    smtp_sink: SmtpSink,
    sender_env: dict[str, str],
    tmp_path: Path,
) -> None:
    job_ids = await queue_emails(pool, confirming_petition_id, 5)
    smtp_sink.hold_at = 2
    process = spawn_worker(sender_env, tmp_path / "sender.log", module="mail_sender")
    try:
        await eventually(_is_set(smtp_sink.holding))
        process.signal(signal.SIGTERM)

        async def stopping() -> bool:
            return "stopping" in process.log()

        await eventually(stopping)
        smtp_sink.release.set()  # the server answers the message in hand
        assert await asyncio.to_thread(process.proc.wait, 20) == 0
    finally:
        process.kill()
    assert "mail sender stopped" in process.log()
    rows = {row["id"]: row for row in await pool.fetch("SELECT * FROM email_jobs")}
    assert [job_id for job_id in job_ids if rows[job_id]["sent_at"]] == job_ids[:2]
    # The rest of its batch was given back at once, not left to the lease.
    for job_id in job_ids[2:]:
        assert rows[job_id]["attempts"] == 0
        assert await pool.fetchval(
            "SELECT next_attempt_at <= now() FROM email_jobs WHERE id = $1", job_id
        )
    assert len(smtp_sink.received) == 2


def _is_set(event: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return event.is_set()

    return check


# -- purge ---------------------------------------------------------------------------------------


async def test_stale_pending_signatures_are_purged_and_nothing_else(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    worker: CounterWorker,
    redis: Redis,
    layout: KeyLayout,
) -> None:
    await add_signatures(pool, confirming_petition_id, 5)  # confirmed, counted
    await queue_emails(pool, confirming_petition_id, 4)
    await worker.drain()
    # pending1: for 20 days; pending2: too, but asked for an email 2 days ago;
    # pending3: for 2 days; pending4: for 20 days, then confirmed.
    await pool.execute(
        """UPDATE signatures SET created_at = now() - interval '20 days'
           WHERE email IN ('pending1@example.org', 'pending2@example.org',
                           'pending4@example.org')"""
    )
    await pool.execute(
        """UPDATE email_jobs SET created_at = now() - interval '20 days'
           WHERE signature_id IN (
               SELECT id FROM signatures WHERE email <> 'pending2@example.org')"""
    )
    await pool.execute(
        """UPDATE signatures SET created_at = now() - interval '2 days'
           WHERE email = 'pending3@example.org'"""
    )
    await pool.execute(
        "UPDATE signatures SET confirmed_at = now() WHERE email = 'pending4@example.org'"
    )
    await worker.drain()
    before = await assert_converges(pool, redis, layout, confirming_petition_id)

    assert await purge_unconfirmed(pool, 14) == 1
    remaining = {row["email"] for row in await pool.fetch("SELECT email FROM signatures")}
    assert "pending1@example.org" not in remaining
    assert {"pending2@example.org", "pending3@example.org", "pending4@example.org"} <= remaining
    assert len(remaining) == 8
    assert await pool.fetchval("SELECT count(*) FROM email_jobs") == 3  # pending1's went too
    assert await pool.fetchval("SELECT count(*) FROM counter_events") == 0  # never counted
    after = await assert_converges(pool, redis, layout, confirming_petition_id)
    assert after == before
    assert after.total == 6
    assert await purge_unconfirmed(pool, 14) == 0


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://user:p%40ss@mail.example.org:587?starttls=true",
            SmtpServer("mail.example.org", 587, False, True, "user", "p@ss", 30.0),
        ),
        (
            "smtp://mail.example.org?starttls=true",
            SmtpServer("mail.example.org", 587, False, True, None, None, 30.0),
        ),
        (
            "smtps://mail.example.org",
            SmtpServer("mail.example.org", 465, True, None, None, None, 30.0),
        ),
        (
            "smtp://127.0.0.1:1025?starttls=false&timeout=2.5",
            SmtpServer("127.0.0.1", 1025, False, False, None, None, 2.5),
        ),
        ("smtp://relay", SmtpServer("relay", 25, False, None, None, None, 30.0)),
    ],
)
def test_smtp_urls(url: str, expected: SmtpServer) -> None:
    assert parse_smtp_url(url) == expected
    assert "p@ss" not in repr(parse_smtp_url(url))  # the password never shows


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.org", "smtp:// or smtps://"),
        ("smtp://", "no host"),
        ("smtp://host?starttls=maybe", "true or false"),
        ("smtps://host?starttls=true", "does not apply"),
        ("smtp://host?timeout=soon", "number of seconds"),
        ("smtp://host?timeout=0", "positive"),
        ("smtp://host?verify=no", "unknown parameter verify"),
    ],
)
def test_bad_smtp_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_smtp_url(url)


def test_the_sender_needs_its_settings(mail_settings: Settings) -> None:
    with pytest.raises(SettingsError, match="SMTP_URL and COUNTERSIGN_MAIL_FROM must be set"):
        dataclasses.replace(mail_settings.mail, smtp=None, mail_from=None).require()
    with pytest.raises(SettingsError, match="at least 3 times the SMTP timeout"):
        dataclasses.replace(mail_settings.mail, lease_seconds=10).require()
