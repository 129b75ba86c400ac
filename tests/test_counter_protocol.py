"""The counter protocol: Redis equals a GROUP BY over Postgres, whatever crashes.

Workers here are real processes, killed with SIGKILL or frozen with SIGSTOP at exact
steps of the protocol (tests/support/stopping_worker.py makes the worker SIGSTOP itself there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal

import asyncpg
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from counter_worker.counts import read_counts
from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.connections import RedisClient, create_redis
from tests.support.counts import assert_converges, postgres_tally, redis_tally
from tests.support.factories import add_signatures
from tests.support.processes import SpawnWorker
from tests.support.servers import PrivateRedis, delete_namespace
from tests.support.waiting import eventually


async def wait_built(redis: RedisClient, layout: KeyLayout, petition_id: int) -> None:
    async def built() -> bool:
        return await read_counts(redis, layout, petition_id) is not None

    await eventually(built)


async def pending_events(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM counter_events")
    return count


# -- in-process, burst mode ------------------------------------------------------------


async def test_drain_makes_redis_equal_postgres(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await worker.drain()
    assert await redis_tally(redis, layout, petition_id) == await postgres_tally(pool, petition_id)

    await add_signatures(pool, petition_id, 250)
    await worker.drain()

    truth = await postgres_tally(pool, petition_id)
    assert truth.total == 250
    assert truth.countries == {"SY": 50, "FR": 50, "RU": 50, "US": 50, "DE": 50}
    assert await redis_tally(redis, layout, petition_id) == truth
    assert await pending_events(pool) == 0


async def test_hand_written_sql_updates_and_deletes_reach_redis(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await add_signatures(pool, petition_id, 100)
    await worker.drain()

    # Staff fix data by hand: every writer goes through the triggers.
    await pool.execute("UPDATE signatures SET country = 'SY' WHERE country = 'FR'")
    await pool.execute("DELETE FROM signatures WHERE country = 'DE'")
    await pool.execute("UPDATE signatures SET name = 'Renamed' WHERE country = 'RU'")
    await worker.drain()

    truth = await postgres_tally(pool, petition_id)
    assert truth.total == 80
    assert truth.countries == {"SY": 40, "RU": 20, "US": 20}
    assert await redis_tally(redis, layout, petition_id) == truth


async def test_each_reason_not_to_count_is_undone_on_its_own(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await add_signatures(pool, petition_id, 50)
    await pool.execute("UPDATE signatures SET suspect_reason = 'burst' WHERE country = 'SY'")
    await pool.execute(
        "UPDATE signatures SET invalidated_at = now(), invalid_reason = 'fraud'"
        " WHERE country IN ('SY', 'FR')"
    )
    await worker.drain()
    assert (await redis_tally(redis, layout, petition_id)).total == 30  # type: ignore[union-attr]

    # Undoing the invalidation leaves the suspects uncounted, and the reverse.
    await pool.execute("UPDATE signatures SET invalidated_at = NULL, invalid_reason = NULL")
    await worker.drain()
    assert (await redis_tally(redis, layout, petition_id)).total == 40  # type: ignore[union-attr]
    await pool.execute("UPDATE signatures SET suspect_reason = NULL")
    await worker.drain()
    truth = await postgres_tally(pool, petition_id)
    assert truth.total == 50
    assert await redis_tally(redis, layout, petition_id) == truth


async def test_truncate_is_refused(pool: asyncpg.Pool, petition_id: int) -> None:
    await add_signatures(pool, petition_id, 3)
    with pytest.raises(asyncpg.RaiseError, match="bypasses the live counters"):
        # CASCADE: past the foreign keys that point at signatures (email_jobs), which
        # refuse a plain TRUNCATE on their own, to the trigger.
        await pool.execute("TRUNCATE signatures CASCADE")
    assert await pool.fetchval("SELECT count(*) FROM signatures") == 3


async def test_counts_are_unavailable_until_built_then_a_flush_is_rebuilt(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await add_signatures(pool, petition_id, 40)
    assert await read_counts(redis, layout, petition_id) is None
    await worker.drain()
    assert (await read_counts(redis, layout, petition_id)) is not None

    await delete_namespace(redis, layout)
    assert await read_counts(redis, layout, petition_id) is None
    await add_signatures(pool, petition_id, 10)
    await worker.drain()
    truth = await postgres_tally(pool, petition_id)
    assert truth.total == 50
    assert await redis_tally(redis, layout, petition_id) == truth


async def test_a_delta_is_not_applied_over_missing_counters(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await worker.drain()
    await add_signatures(pool, petition_id, 30)
    await redis.delete(layout.petition(petition_id).built)  # as if Redis lost it

    # The batch path itself notices, rebuilds, and lands the batch exactly once.
    assert await worker.process_next_batch()
    truth = await postgres_tally(pool, petition_id)
    assert await redis_tally(redis, layout, petition_id) == truth
    assert truth.total == 30


async def test_on_demand_rebuild_while_workers_and_signing_run(
    pool: asyncpg.Pool,
    redis: RedisClient,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
    spawn: SpawnWorker,
) -> None:
    spawn()
    spawn()
    await wait_built(redis, layout, petition_id)

    async def sign() -> None:
        for _ in range(60):
            await add_signatures(pool, petition_id, 7)
            await asyncio.sleep(0.005)

    signing = asyncio.create_task(sign())
    for _ in range(5):
        assert await worker.rebuild_all() == 1
    await signing
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 420


# -- real worker processes, killed and frozen ---------------------------------------------


async def test_worker_killed_after_claiming_a_batch(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, spawn: SpawnWorker
) -> None:
    victim = spawn(stop_at="after_claim")
    await wait_built(redis, layout, petition_id)
    await add_signatures(pool, petition_id, 300)
    await victim.wait_stopped()
    claimed = await pool.fetchval("SELECT count(*) FROM counter_events WHERE batch_id IS NOT NULL")
    assert claimed > 0
    assert (await redis_tally(redis, layout, petition_id)).total == 0  # type: ignore[union-attr]
    victim.kill()

    await add_signatures(pool, petition_id, 200)
    rescuer = spawn()
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 500
    assert "recovering batch" in rescuer.log()


async def test_worker_killed_after_applying_before_acknowledging(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, spawn: SpawnWorker
) -> None:
    victim = spawn(stop_at="after_apply")
    await wait_built(redis, layout, petition_id)
    await add_signatures(pool, petition_id, 300)
    await victim.wait_stopped()
    # Applied to RedisClient, still in Postgres: the dangerous window for double counting.
    assert (await redis_tally(redis, layout, petition_id)).total == 300  # type: ignore[union-attr]
    assert await pending_events(pool) > 0
    victim.kill()

    await add_signatures(pool, petition_id, 100)
    rescuer = spawn()
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 400
    assert "recovering batch" in rescuer.log()


async def test_worker_killed_in_the_middle_of_a_rebuild(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, spawn: SpawnWorker
) -> None:
    await add_signatures(pool, petition_id, 300)
    victim = spawn(stop_at="rebuild_before_write")
    await victim.wait_stopped()
    # It has read the counts and claimed every event, and written nothing to Redis.
    assert await read_counts(redis, layout, petition_id) is None
    unclaimed = await pool.fetchval("SELECT count(*) FROM counter_events WHERE batch_id IS NULL")
    assert unclaimed == 0
    victim.kill()

    await add_signatures(pool, petition_id, 100)
    spawn()
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 400


async def test_frozen_worker_past_its_lease_is_fenced_when_thawed(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, spawn: SpawnWorker
) -> None:
    sleeper = spawn(stop_at="after_claim")
    await wait_built(redis, layout, petition_id)
    await add_signatures(pool, petition_id, 200)
    await sleeper.wait_stopped()

    rescuer = spawn()
    assert (await assert_converges(pool, redis, layout, petition_id)).total == 200
    assert sleeper.is_stopped()  # the batch was taken over while it slept
    assert "recovering batch" in rescuer.log()
    await add_signatures(pool, petition_id, 100)
    assert (await assert_converges(pool, redis, layout, petition_id)).total == 300

    sleeper.signal(signal.SIGCONT)

    async def fenced() -> bool:
        return "expired before it was applied" in sleeper.log()

    await eventually(fenced)
    await add_signatures(pool, petition_id, 100)
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 400
    assert sleeper.proc.poll() is None  # thawed, fenced, and back at work


async def test_three_workers_share_the_load_exactly(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, spawn: SpawnWorker
) -> None:
    for _ in range(3):
        spawn()
    await wait_built(redis, layout, petition_id)

    async def sign(countries: tuple[str, ...]) -> None:
        for _ in range(80):
            await add_signatures(pool, petition_id, 5, countries=countries)

    await asyncio.gather(sign(("SY", "LB")), sign(("FR",)), sign(("RU", "UA", "BY")), sign(("US",)))
    status = await pool.execute("DELETE FROM signatures WHERE country = 'LB'")
    deleted = int(status.split()[-1])
    assert deleted > 0
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 4 * 80 * 5 - deleted
    assert "LB" not in truth.countries


async def test_redis_flushed_while_signing_goes_on(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, spawn: SpawnWorker
) -> None:
    spawn()
    spawn()
    await wait_built(redis, layout, petition_id)
    signing_done = asyncio.Event()

    async def sign() -> None:
        for _ in range(150):
            await add_signatures(pool, petition_id, 4)
            await asyncio.sleep(0.005)
        signing_done.set()

    signing = asyncio.create_task(sign())
    flushes = 0
    while not signing_done.is_set():
        await asyncio.sleep(0.15)
        flushes += await delete_namespace(redis, layout) > 0
    await signing
    assert flushes >= 3
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 600


# -- Redis restarted empty: a private redis-server this test owns -------------------------


async def test_redis_restarted_empty_while_signing_goes_on(
    pool: asyncpg.Pool,
    layout: KeyLayout,
    petition_id: int,
    spawn: SpawnWorker,
    private_redis: PrivateRedis,
) -> None:
    client = create_redis(private_redis.url)
    await private_redis.wait_up(client)
    spawn(REDIS_URL=private_redis.url)
    spawn(REDIS_URL=private_redis.url)
    await wait_built(client, layout, petition_id)

    async def sign() -> None:
        for _ in range(100):
            await add_signatures(pool, petition_id, 3)
            await asyncio.sleep(0.01)

    signing = asyncio.create_task(sign())
    await asyncio.sleep(0.3)
    private_redis.kill()  # SIGKILL: nothing saved, and it had no persistence anyway
    await asyncio.sleep(0.3)
    private_redis.start()
    await signing
    await private_redis.wait_up(client)
    truth = await assert_converges(pool, client, layout, petition_id)
    assert truth.total == 300
    await client.aclose()


async def test_a_busy_worker_takes_what_arrived_while_it_paused_in_one_batch(
    worker: CounterWorker, pool: asyncpg.Pool, redis: Redis, layout: KeyLayout, petition_id: int
) -> None:
    paced = CounterWorker(
        worker.dsn, pool, redis, layout, dataclasses.replace(worker.config, pace=2.0)
    )
    await paced.drain()  # the counters built
    batches_before = REGISTRY.get_sample_value("countersign_worker_batch_events_count") or 0
    stopping = asyncio.Event()
    running = asyncio.create_task(paced.run(stopping))
    try:

        async def counted(total: int) -> bool:
            counts = await read_counts(redis, layout, petition_id)
            return counts is not None and counts.total == total

        # After a quiet spell a change goes at once...
        await add_signatures(pool, petition_id, 1)
        await eventually(lambda: counted(1), timeout=1.5)
        # ...then changes one after the other (a transaction, a NOTIFY each) wait for
        # the pause to end, and go together.
        for _ in range(5):
            await add_signatures(pool, petition_id, 1)
        await eventually(lambda: counted(6), timeout=10)
    finally:
        stopping.set()
        await running
    batches = REGISTRY.get_sample_value("countersign_worker_batch_events_count") or 0
    assert batches - batches_before == 2
