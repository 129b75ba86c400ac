"""Faults: Postgres stopped, restarted or hanging; Redis gone. Servers here are private
ones each test owns (never the machine's): stopped with pg_ctl, frozen with SIGSTOP,
killed with SIGKILL."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import logging
import signal

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign.embedded import ensure_database
from countersign_core.connections import RedisClient, create_redis
from countersign_core.migrations import migrate
from countersign_core.settings import Settings
from countersign_domain.petitions import create_petition
from petition_api.app import create_app
from tests.support.counts import assert_converges
from tests.support.factories import SLUG, signer
from tests.support.http import COUNTS, SIGN, AiohttpClient, Client, error_of
from tests.support.processes import SpawnWorker
from tests.support.servers import PrivatePostgres, PrivateRedis
from tests.support.waiting import eventually

# Far above the one second a request may wait on a back end: a hanging request fails the
# test instead of passing slowly.
NO_HANGING = aiohttp.ClientTimeout(total=15)


class Signer:
    """Signs with a new address each time and remembers every 201."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.accepted: list[str] = []
        self.statuses: list[int] = []
        self._numbers = itertools.count()

    async def sign(self) -> aiohttp.ClientResponse:
        email = f"signer{next(self._numbers)}@example.org"
        response = await self.client.post(SIGN, json=signer(email=email), timeout=NO_HANGING)
        self.statuses.append(response.status)
        if response.status == 201:
            self.accepted.append(email)
        return response

    async def signs(self) -> bool:
        return (await self.sign()).status == 201


async def stored_emails(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return {row["email"] for row in await conn.fetch("SELECT email FROM signatures")}
    finally:
        await conn.close()


@pytest.fixture
async def private_database(private_postgres: PrivatePostgres) -> str:
    url = await ensure_database(private_postgres.url, "countersign")
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await create_petition(
            conn,
            actor="tests",
            slug=SLUG,
            title="Refer Syria to the ICC",
            status="open",
            require_confirmation=False,
        )
    finally:
        await conn.close()
    return url


@pytest.fixture
async def on_private_postgres(
    aiohttp_client: AiohttpClient, settings: Settings, private_database: str
) -> Signer:
    app = create_app(
        dataclasses.replace(
            settings, database=dataclasses.replace(settings.database, url=private_database)
        )
    )
    return Signer(await aiohttp_client(app))


async def assert_unavailable(response: aiohttp.ClientResponse) -> None:
    error = await error_of(response, 503)
    assert error["code"] == "service_unavailable"
    assert response.headers["Retry-After"] == "1"


# -- Postgres -----------------------------------------------------------------------------


async def test_postgres_stopped_then_started_503_meanwhile_and_nothing_lost(
    on_private_postgres: Signer, private_postgres: PrivatePostgres, private_database: str
) -> None:
    signing = on_private_postgres
    assert await signing.signs()

    await asyncio.to_thread(private_postgres.stop)
    await assert_unavailable(await signing.sign())
    # A petition not in the API's cache needs Postgres too.
    await assert_unavailable(
        await signing.client.get("/v1/petitions/not-cached", timeout=NO_HANGING)
    )

    await asyncio.to_thread(private_postgres.start)
    # The pool reconnects by itself; nobody restarts the API.
    await eventually(signing.signs)
    assert set(signing.statuses) == {201, 503}
    assert set(signing.accepted) <= await stored_emails(private_database)


async def test_postgres_hanging_answers_503_instead_of_hanging(
    on_private_postgres: Signer, private_postgres: PrivatePostgres, private_database: str
) -> None:
    signing = on_private_postgres
    assert await signing.signs()

    private_postgres.freeze()
    try:
        await assert_unavailable(await signing.sign())
        await assert_unavailable(
            await signing.client.get("/v1/petitions/not-cached", timeout=NO_HANGING)
        )
        ready = await signing.client.get("/readyz", timeout=NO_HANGING)
        assert ready.status == 503
        assert (await ready.json())["postgres"] == "unavailable"
    finally:
        private_postgres.thaw()

    await eventually(signing.signs)
    assert set(signing.statuses) == {201, 503}
    assert set(signing.accepted) <= await stored_emails(private_database)


async def test_a_hanging_postgres_gets_503_within_the_backend_timeout(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    private_database: str,
    private_postgres: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    quick = dataclasses.replace(
        settings,
        database=dataclasses.replace(settings.database, url=private_database),
        api=dataclasses.replace(settings.api, backend_timeout=0.5),
    )
    signing = Signer(await aiohttp_client(create_app(quick)))
    assert await signing.signs()
    assert (await signing.client.get("/readyz")).status == 200
    # The timeout and then some: a request must not wait for the server to acknowledge
    # the cancellation of its query (that took 6-9 seconds).
    deadline = aiohttp.ClientTimeout(total=4)

    private_postgres.freeze()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            ready = await signing.client.get("/readyz", timeout=deadline)
            assert ready.status == 503
            assert (await ready.json())["postgres"] == "unavailable"
            unknown = await signing.client.post(
                "/v1/petitions/not-cached/signatures", json=signer(), timeout=deadline
            )
            await assert_unavailable(unknown)
            for _ in range(3):  # the petition is cached: the INSERT waits
                await assert_unavailable(
                    await signing.client.post(SIGN, json=signer(), timeout=deadline)
                )
            asked = await signing.client.post(
                "/confirm", data={"email": "someone@example.org"}, timeout=deadline
            )
            assert asked.status == 503
    finally:
        private_postgres.thaw()
    await eventually(signing.signs)
    gc.collect()
    # Each abandoned wait's outcome was read: none is reported as never retrieved.
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


# -- Redis --------------------------------------------------------------------------------


def on_redis(settings: Settings, url: str) -> Settings:
    return dataclasses.replace(settings, redis=dataclasses.replace(settings.redis, url=url))


def skipped_limits() -> float:
    return REGISTRY.get_sample_value("countersign_rate_limits_skipped_total") or 0.0


async def test_redis_down_signing_goes_on_counts_go_stale_and_the_worker_catches_up(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database_url: str,
    pool: asyncpg.Pool,
    layout: KeyLayout,
    petition_id: int,
    private_redis: PrivateRedis,
    spawn: SpawnWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis: RedisClient = create_redis(private_redis.url)
    await private_redis.wait_up(redis)
    in_process = CounterWorker(database_url, pool, redis, layout, settings.worker)
    on_private_redis = on_redis(settings, private_redis.url)
    signing = Signer(await aiohttp_client(create_app(on_private_redis)))
    for _ in range(2):
        assert await signing.signs()
    await in_process.drain()
    counts = await signing.client.get(COUNTS)
    assert (await counts.json())["stale"] is False

    private_redis.kill()
    skipped = skipped_limits()
    with caplog.at_level(logging.WARNING, logger="petition_api"):
        for _ in range(3):
            assert await signing.signs()  # Postgres is the truth: signing goes on
    assert skipped_limits() == skipped + 3
    # Said once, not once per signature.
    assert [r.getMessage() for r in caplog.records if "rate limits" in r.getMessage()] == [
        "back end unavailable (ConnectionError): rate limits skipped"
    ]

    # The last figures this process saw, marked stale and not to be cached.
    stale = await signing.client.get(COUNTS, timeout=NO_HANGING)
    assert stale.status == 200
    body = await stale.json()
    assert (body["total"], body["stale"]) == (2, True)
    assert stale.headers["Cache-Control"] == "no-store"
    assert "ETag" not in stale.headers
    # A process that never saw them has nothing to show: 503, never a 500.
    fresh = await aiohttp_client(create_app(on_private_redis))
    never_seen = await fresh.get(COUNTS, timeout=NO_HANGING)
    assert (await error_of(never_seen, 503))["code"] == "counts_unavailable"
    assert (await (await fresh.get("/readyz")).json())["redis"] == "unavailable"

    worker = spawn(REDIS_URL=private_redis.url)

    async def backing_off() -> bool:
        return "retrying in" in worker.log()

    await eventually(backing_off)
    private_redis.start()  # empty: it kept nothing
    await private_redis.wait_up(redis)
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 5

    async def fresh_again() -> bool:
        body = await (await signing.client.get(COUNTS)).json()
        return bool(body["stale"] is False and body["total"] == 5)

    await eventually(fresh_again)
    await redis.aclose()


async def test_redis_hanging_does_not_hang_signing_or_counts(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database_url: str,
    pool: asyncpg.Pool,
    layout: KeyLayout,
    petition_id: int,
    private_redis: PrivateRedis,
) -> None:
    redis: RedisClient = create_redis(private_redis.url)
    await private_redis.wait_up(redis)
    await CounterWorker(database_url, pool, redis, layout, settings.worker).drain()
    signing = Signer(await aiohttp_client(create_app(on_redis(settings, private_redis.url))))
    assert (await (await signing.client.get(COUNTS)).json())["stale"] is False
    assert private_redis.proc is not None
    # Connections stay open and nothing answers.
    private_redis.proc.send_signal(signal.SIGSTOP)
    try:
        assert await signing.signs()
        stale = await signing.client.get(COUNTS, timeout=NO_HANGING)
        assert (await stale.json())["stale"] is True
    finally:
        private_redis.proc.send_signal(signal.SIGCONT)
    await redis.aclose()
