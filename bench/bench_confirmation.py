"""Confirmation benchmark: the batched sign statement with and without email jobs, and
the mail sender's delivery rate to a local SMTP server.

1. Signing: the API's batching writer (in process, no HTTP) records N signatures on a
   petition that counts at once, then N on one that requires confirmation (each with its
   email job, in the same statement). Both rates are printed; the difference is the cost
   of the pending row and its job.
2. Sending: mail senders deliver M of those jobs to an aiosmtpd server in a thread,
   with 1 and then 4 SMTP connections; every job must be sent exactly once.

    python -m bench.bench_confirmation [--signatures 20000] [--emails 3000]

Servers: DATABASE_URL / REDIS_URL (server-level URLs) when set, else embedded ones. The
script creates and drops its own ``cs_bench_*`` database. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import secrets
import sys
import time
from collections import Counter

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.harness.run import bench_main, say
from bench.harness.stack import workspace
from countersign.mailcatcher import start_smtp_server
from countersign_core.connections import create_pg_pool
from countersign_core.settings import load_settings
from countersign_core.smtp import parse_smtp_url
from countersign_core.texts import TextCatalog
from countersign_domain.petitions import create_petition
from countersign_domain.signatures import Hasher, NewSignature, SignatureWriter
from mail_sender.main import build_sender

SECRET = secrets.token_urlsafe(32)


async def sign_many(pool: asyncpg.Pool, petition_id: int, n: int, tag: str) -> float:
    """Record n signatures through the batching writer; returns signatures/s."""
    writer = SignatureWriter(pool)
    hasher = Hasher(SECRET)
    try:
        started = time.perf_counter()
        for wave in range(0, n, 2000):  # a few thousand requests in flight at once
            await asyncio.gather(
                *(
                    writer.write(
                        NewSignature(
                            petition_id=petition_id,
                            name="Bench Signer",
                            email=f"{tag}{i}@example.org",
                            email_hash=hasher.email(f"{tag}{i}@example.org"),
                            country="FR",
                            postal_code=None,
                            source=None,
                            consent_updates=False,
                            ip_hash=None,
                            language="en",
                        )
                    )
                    for i in range(wave, min(wave + 2000, n))
                )
            )
        return n / (time.perf_counter() - started)
    finally:
        await writer.close()


class Sink:
    """Accepts every message and counts its Message-ID."""

    def __init__(self) -> None:
        self.message_ids: Counter[str] = Counter()

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        for line in raw.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                self.message_ids[line.split(b":", 1)[1].strip().decode()] += 1
        return "250 OK"


async def send_all(
    database_url: str, pool: asyncpg.Pool, port: int, connections: int, expected: int
) -> float:
    """Run a sender until ``expected`` jobs are sent; returns emails/s."""
    defaults = load_settings()
    settings = dataclasses.replace(
        defaults,
        secret_key=SECRET,
        mail=dataclasses.replace(
            defaults.mail,
            public_url="http://bench.test",
            mail_from="bench@bench.test",
            smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}?starttls=false&timeout=10"),
            connections=connections,
            poll_interval=0.2,
        ),
    )
    sender = build_sender(settings, database_url, pool, TextCatalog.load())
    stopping = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(sender.run(stopping))
    while await pool.fetchval("SELECT count(*) FROM email_jobs WHERE sent_at IS NOT NULL") < (
        expected
    ):
        if running.done():
            running.result()
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stopping.set()
    await running
    return expected / elapsed


async def bench(database_url: str, signatures: int, emails: int) -> bool:
    conn = await asyncpg.connect(database_url)
    counted = await create_petition(
        conn,
        actor="bench",
        slug="bench-counted",
        title="Bench",
        status="open",
        require_confirmation=False,
    )
    pending = await create_petition(
        conn, actor="bench", slug="bench-pending", title="Bench", status="open"
    )
    await conn.close()
    pool = await create_pg_pool(database_url, max_size=10)
    ok = True
    try:
        say(f"== signing {signatures:,} signatures through the batching writer")
        rate = await sign_many(pool, counted.id, signatures, "counted")
        say(f"   counted at once:               {rate:8,.0f} signatures/s")
        rate = await sign_many(pool, pending.id, signatures, "pending")
        say(f"   pending, with their email job: {rate:8,.0f} signatures/s")
        jobs = await pool.fetchval("SELECT count(*) FROM email_jobs")
        ok &= check(jobs == signatures, f"one email job per pending signature ({jobs:,})")

        # Keep the first `emails` jobs; the sender need not work through all of them.
        await pool.execute(
            """DELETE FROM email_jobs
               WHERE id NOT IN (SELECT id FROM email_jobs ORDER BY id LIMIT $1)""",
            emails,
        )
        sink = Sink()
        controller, port = start_smtp_server(sink)
        try:
            for connections in (1, 4):
                await pool.execute(
                    """UPDATE email_jobs SET sent_at = NULL, message_id = NULL,
                              attempts = 0, next_attempt_at = now()"""
                )
                sink.message_ids.clear()
                say(f"== sending {emails:,} emails with {connections} connection(s)")
                rate = await send_all(database_url, pool, port, connections, emails)
                say(f"   {rate:8,.0f} emails/s")
                copies = set(sink.message_ids.values())
                ok &= check(
                    len(sink.message_ids) == emails and copies == {1},
                    f"every email sent exactly once ({len(sink.message_ids):,} ids)",
                )
        finally:
            controller.stop()
    finally:
        await pool.close()
    return ok


def check(condition: bool, what: str) -> bool:
    say(f"   {'ok ' if condition else 'FAILED'} {what}")
    return condition


async def main_async(signatures: int, emails: int) -> int:
    async with contextlib.AsyncExitStack() as exits:
        site = await workspace(exits)
        return 0 if await bench(site.database_url, signatures, emails) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signatures", type=int, default=20_000)
    parser.add_argument("--emails", type=int, default=3_000)
    args = parser.parse_args()
    return bench_main(lambda: main_async(args.signatures, args.emails), "bench_confirmation")


if __name__ == "__main__":
    sys.exit(main())
