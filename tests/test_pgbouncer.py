"""Behind PgBouncer in transaction mode (Debian's, started here in front of the tests'
Postgres): signing, exact counts, the worker's and the mail sender's wake-up by LISTEN on
the direct URL, export and the command line.

The services poll only once a minute here, so that only a NOTIFY received on the direct
connection can wake them within the tests' deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from counter_worker.keys import KeyLayout
from countersign.embedded import with_database
from countersign_core.connections import RedisClient
from tests.support.counts import assert_converges
from tests.support.factories import signer
from tests.support.http import read_csv
from tests.support.mail import SmtpSink, queue_emails
from tests.support.processes import SpawnApi, SpawnWorker, countersign, spawn_worker
from tests.support.servers import PrivatePgBouncer, Servers, throwaway_database
from tests.support.waiting import eventually

SIGNATURES = 300
# Longer than any deadline below: what happens in time happens because of a NOTIFY.
NO_POLLING = {"COUNTERSIGN_WORKER_POLL_INTERVAL": "60", "COUNTERSIGN_HEARTBEAT_INTERVAL": "60"}


@pytest.fixture(scope="module")
def pgbouncer(servers: Servers) -> Iterator[PrivatePgBouncer]:
    bouncer = PrivatePgBouncer(servers.postgres)
    yield bouncer
    bouncer.stop()


def through(pgbouncer: PrivatePgBouncer, direct_url: str) -> dict[str, str]:
    """The settings of a process that reaches ``direct_url``'s database through PgBouncer."""
    database = urlsplit(direct_url).path.lstrip("/")
    return {
        "DATABASE_URL": pgbouncer.url(database),
        "DATABASE_DIRECT_URL": direct_url,
        "COUNTERSIGN_DATABASE_POOLER": "transaction",
    }


async def test_signing_counts_exactly_and_the_worker_wakes_on_notify(
    pgbouncer: PrivatePgBouncer,
    database_url: str,
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    petition_id: int,
    run_api: SpawnApi,
    spawn: SpawnWorker,
) -> None:
    pooled = through(pgbouncer, database_url)
    worker = spawn(**pooled, **NO_POLLING)
    # Correctness here; latency through PgBouncer is the bench's (README, "Capacity"), and
    # a loaded test machine must not turn a slow answer into a 503.
    api = await run_api(**pooled, COUNTERSIGN_BACKEND_TIMEOUT="10")

    async def built() -> bool:
        worker.check_alive()
        return bool(await redis.exists(layout.petition(petition_id).built))

    await eventually(built)  # the worker is past its start, waiting for a NOTIFY

    async with aiohttp.ClientSession() as session:

        async def sign(n: int) -> int:
            body = signer(email=f"signer{n}@example.org", country=("SY", "FR", "RU")[n % 3])
            url = f"{api.url}/v1/petitions/refer-syria-to-icc/signatures"
            async with session.post(url, json=body) as response:
                return response.status

        statuses = await asyncio.gather(*(sign(n) for n in range(SIGNATURES)))
    assert statuses == [201] * SIGNATURES
    truth = await assert_converges(pool, redis, layout, petition_id, timeout=20)
    assert truth.countries == {"SY": 100, "FR": 100, "RU": 100}
    assert "Traceback" not in worker.log()


async def test_the_mail_sender_wakes_on_notify_and_sends(
    pgbouncer: PrivatePgBouncer,
    database_url: str,
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    sender_env: dict[str, str],
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    env = {**sender_env, **through(pgbouncer, database_url), **NO_POLLING}
    env["COUNTERSIGN_MAIL_POLL_INTERVAL"] = "60"
    sender = spawn_worker(env, tmp_path / "mailer.log", module="mail_sender")
    try:

        async def listening() -> bool:  # its first pass is done: it waits now
            sender.check_alive()
            kind: str | None = await pool.fetchval("SELECT kind FROM process_heartbeats")
            return kind == "mail_sender"

        await eventually(listening)
        await queue_emails(pool, confirming_petition_id, 5)

        async def sent() -> bool:
            sender.check_alive()
            return len(smtp_sink.received) == 5

        await eventually(sent, timeout=15)
    finally:
        sender.stop()


async def test_the_command_line_migrates_creates_and_exports(
    pgbouncer: PrivatePgBouncer, servers: Servers, tmp_path: Path
) -> None:
    async with throwaway_database(servers) as direct_url:
        env = {**through(pgbouncer, direct_url), "REDIS_URL": servers.redis}

        def run(*args: str) -> str:
            result = countersign(*args, env=env)
            assert result.returncode == 0, result.stderr
            return result.stdout

        assert run("migrate").startswith("applied ")
        assert run("migrate", "--check").strip() == "every migration is applied"
        run("petition", "create", "--slug", "free-them", "--title", "Free them", "--open")
        conn = await asyncpg.connect(direct_url)
        try:
            await conn.execute(
                """INSERT INTO signatures (petition_id, name, email, email_hash, country)
                   SELECT id, 'Signer', 's' || g || '@example.org',
                          sha256(g::text::bytea), 'SY'
                   FROM petitions, generate_series(1, 40) AS g"""
            )
        finally:
            await conn.close()
        out = tmp_path / "free-them.csv"
        run("export", "free-them", "--out", str(out))
        assert len(read_csv(out.read_bytes())) == 40


async def test_without_the_pooler_setting_the_command_says_what_went_wrong(
    servers: Servers, database_url: str, petition_id: int
) -> None:
    # One server connection: the second command meets the statements the first left on
    # it, which is what transaction pooling does to asyncpg's statement cache.
    bouncer = PrivatePgBouncer(servers.postgres, pool_size=1)
    try:
        pooled = bouncer.url(urlsplit(database_url).path.lstrip("/"))
        env = {"DATABASE_URL": pooled, "REDIS_URL": servers.redis}
        results = [countersign("petition", "open", "refer-syria-to-icc", env=env)]
        results.append(countersign("petition", "close", "refer-syria-to-icc", env=env))
        failed = [result for result in results if result.returncode]
        assert failed, [result.stdout for result in results]
        for result in failed:
            assert "cannot reach the database" not in result.stderr
            assert "COUNTERSIGN_DATABASE_POOLER=transaction" in result.stderr, result.stderr
    finally:
        bouncer.stop()


def test_a_pooled_url_without_a_direct_one_is_refused_where_a_session_is_needed(
    servers: Servers,
) -> None:
    env = {
        "DATABASE_URL": with_database(servers.postgres, "anything"),
        "REDIS_URL": servers.redis,
        "COUNTERSIGN_DATABASE_POOLER": "transaction",
    }
    result = countersign("migrate", env=env)
    assert result.returncode == 2
    assert "DATABASE_DIRECT_URL must be set" in result.stderr
