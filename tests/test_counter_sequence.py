"""The applied-batch sequence: a Redis that lost applied batches is found out and rebuilt.

Redis replication is asynchronous: a failover, a replica promoted or a restore from an
old snapshot take the counters back in time after Postgres deleted the events of what was
lost. Here Redis is taken back in time by hand (DUMP, then RESTORE of the petition's keys
as they were), the way a failover does it; tests/test_redis_topologies.py does it with a
real Sentinel failover.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.connections import RedisClient
from tests.support.counts import postgres_tally, redis_tally
from tests.support.factories import add_signatures
from tests.support.servers import Servers

Snapshot = dict[bytes, bytes]


@pytest.fixture
async def raw(servers: Servers) -> AsyncIterator[Redis]:
    """A client that leaves bytes alone (DUMP's are not text)."""
    client = Redis.from_url(servers.redis)
    yield client
    await client.aclose()


async def snapshot(raw: Redis, layout: KeyLayout) -> Snapshot:
    """Every key of the layout, serialized as Redis persists it."""
    found = {}
    async for key in raw.scan_iter(match=layout.namespace_pattern()):
        dumped = await raw.dump(key)
        if dumped is not None:
            found[key] = dumped
    return found


async def go_back_to(raw: Redis, layout: KeyLayout, earlier: Snapshot) -> None:
    """Redis as it was at ``earlier``: what a replica that lagged shows once promoted."""
    async for key in raw.scan_iter(match=layout.namespace_pattern()):
        await raw.delete(key)
    for key, dumped in earlier.items():
        await raw.restore(key, 0, dumped)


async def sequence_in_postgres(pool: asyncpg.Pool, petition_id: int) -> int:
    acked: int = await pool.fetchval(
        "SELECT coalesce(max(seq), 0) FROM counter_acks WHERE petition_id = $1", petition_id
    )
    return acked


async def test_each_applied_batch_takes_the_next_number_in_both_stores(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await worker.drain()  # the first build: number 1
    for _ in range(3):
        await add_signatures(pool, petition_id, 10)
        await worker.drain()
    assert await sequence_in_postgres(pool, petition_id) == 4
    assert await redis.get(layout.petition(petition_id).seq) == "4"


@pytest.mark.parametrize("signing_goes_on", [False, True], ids=["idle", "signing"])
async def test_redis_back_in_time_is_rebuilt_without_anyone_asking(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
    caplog: pytest.LogCaptureFixture,
    signing_goes_on: bool,
    raw: Redis,
) -> None:
    await add_signatures(pool, petition_id, 100)
    await worker.drain()
    earlier = await snapshot(raw, layout)
    await add_signatures(pool, petition_id, 200)
    await worker.drain()  # applied, acknowledged: the events are gone from Postgres

    await go_back_to(raw, layout, earlier)
    stale = await redis_tally(redis, layout, petition_id)
    assert stale is not None
    assert stale.total == 100  # built, and wrong: what a failover left behind

    if signing_goes_on:  # the next batch's apply sees it
        await add_signatures(pool, petition_id, 5)
        assert await worker.process_next_batch()
    else:  # nobody signs: the worker's regular check sees it
        with caplog.at_level(logging.WARNING, logger="counter_worker"):
            assert await worker.rebuild_stale() == 1
        assert "Redis lost applied batches" in caplog.text
    truth = await postgres_tally(pool, petition_id)
    assert truth.total == (305 if signing_goes_on else 300)
    assert await redis_tally(redis, layout, petition_id) == truth


async def test_a_number_handed_out_twice_is_caught_at_the_ack(
    pool: asyncpg.Pool,
    redis: RedisClient,
    raw: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await add_signatures(pool, petition_id, 50)
    await worker.drain()
    earlier = await snapshot(raw, layout)
    await add_signatures(pool, petition_id, 20)
    await worker.drain()
    taken = await sequence_in_postgres(pool, petition_id)

    # Redis lost that last batch and gave its number to another one, whose worker read
    # the sequence before the first was acknowledged: Redis is not behind, but the
    # number is taken.
    await go_back_to(raw, layout, earlier)
    await redis.set(layout.petition(petition_id).seq, taken)
    assert await worker.acknowledge(petition_id, str(uuid4()), taken)
    assert await pool.fetchval("SELECT count(*) FROM counter_divergences") == 1

    await worker.drain()
    truth = await postgres_tally(pool, petition_id)
    assert truth.total == 70
    assert await redis_tally(redis, layout, petition_id) == truth
    assert await pool.fetchval("SELECT count(*) FROM counter_divergences") == 0


async def test_the_same_batch_acknowledged_twice_is_no_divergence(
    pool: asyncpg.Pool, worker: CounterWorker, petition_id: int
) -> None:
    batch = str(uuid4())
    assert not await worker.acknowledge(petition_id, batch, 7)
    assert not await worker.acknowledge(petition_id, batch, 7)  # a retry after a lost reply
    assert await pool.fetchval("SELECT count(*) FROM counter_divergences") == 0
