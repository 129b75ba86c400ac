"""Reading the live counters: the API's only way into the worker's key layout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from counter_worker.keys import KeyLayout


@dataclass(frozen=True)
class LiveCounts:
    total: int
    countries: dict[str, int]
    sources: dict[str, int]
    updated_at: datetime | None

    def top_countries(self) -> list[tuple[str, int]]:
        """Countries by count, largest first; ties in code order so output is stable."""
        return sorted(self.countries.items(), key=lambda item: (-item[1], item[0]))


async def read_counts(redis: Redis, layout: KeyLayout, petition_id: int) -> LiveCounts | None:
    """The petition's counters in one round trip, or None while they are not built.

    None means Redis does not (yet, or any more) hold counters equal to Postgres: a new
    petition, or Redis flushed; the worker rebuilds them within moments.
    """
    keys = layout.petition(petition_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.exists(keys.built)
        pipe.get(keys.total)
        pipe.hgetall(keys.countries)
        pipe.hgetall(keys.sources)
        pipe.get(keys.updated_at)
        built, total, countries, sources, updated = await pipe.execute()
    if not built:
        return None
    return LiveCounts(
        total=int(total or 0),
        countries={code: int(n) for code, n in countries.items()},
        sources={code: int(n) for code, n in sources.items()},
        updated_at=datetime.fromtimestamp(float(updated), UTC) if updated else None,
    )


async def read_source_count(
    redis: Redis, layout: KeyLayout, petition_id: int, source: str
) -> int | None:
    """How many counted signatures carry this source, or None while not built."""
    keys = layout.petition(petition_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.exists(keys.built)
        pipe.hget(keys.sources, source)
        built, count = await pipe.execute()
    return int(count or 0) if built else None
