"""The exactness check: the live counts in Redis equal a GROUP BY over Postgres.

The tests assert it (``assert_converges``); bench/chaos.py reports it after its chaos.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from counter_worker.counts import read_counts
from counter_worker.keys import KeyLayout
from countersign_core.connections import RedisClient
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Tally:
    total: int
    countries: dict[str, int]
    sources: dict[str, int]


async def postgres_tally(pool: asyncpg.Pool, petition_id: int) -> Tally:
    """The truth: a GROUP BY over counted signatures."""
    rows = await pool.fetch(
        """SELECT country, coalesce(source, '') AS source, count(*) AS n FROM signatures
           WHERE petition_id = $1 AND counted GROUP BY 1, 2""",
        petition_id,
    )
    countries: dict[str, int] = {}
    sources: dict[str, int] = {}
    for row in rows:
        countries[row["country"]] = countries.get(row["country"], 0) + row["n"]
        sources[row["source"]] = sources.get(row["source"], 0) + row["n"]
    return Tally(sum(countries.values()), countries, sources)


async def redis_tally(redis: RedisClient, layout: KeyLayout, petition_id: int) -> Tally | None:
    counts = await read_counts(redis, layout, petition_id)
    if counts is None:
        return None
    return Tally(counts.total, counts.countries, counts.sources)


async def converged(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int
) -> tuple[Tally, Tally | None] | None:
    """Redis equals Postgres and no event is waiting; else None (for ``eventually``)."""
    pending = await pool.fetchval("SELECT count(*) FROM counter_events")
    truth = await postgres_tally(pool, petition_id)
    live = await redis_tally(redis, layout, petition_id)
    if pending == 0 and live == truth:
        return truth, live
    return None


async def assert_converges(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, timeout: float = 30
) -> Tally:
    try:
        found = await eventually(
            lambda: converged(pool, redis, layout, petition_id), timeout=timeout
        )
    except AssertionError:
        truth = await postgres_tally(pool, petition_id)
        live = await redis_tally(redis, layout, petition_id)
        pending = await pool.fetchval("SELECT count(*) FROM counter_events")
        raise AssertionError(
            f"Redis never equalled Postgres: postgres={truth} redis={live} pending={pending}"
        ) from None
    assert found is not None
    return found[0]
