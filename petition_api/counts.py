"""The ``/counts`` body, rendered from Redis and shared by a process's readers.

A popular petition's counter is read thousands of times a second by display widgets.
Each process renders it at most once per ``ttl``: one Redis round trip then, however
many readers; clients cache it longer anyway (``Cache-Control: max-age``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cachetools import TTLCache
from redis.asyncio import Redis

from counter_worker.counts import LiveCounts, read_counts
from counter_worker.keys import KeyLayout
from petition_api.petitions import Petition
from petition_api.schemas import CountsSchema

_schema = CountsSchema()


@dataclass(frozen=True)
class RenderedCounts:
    body: bytes
    etag: str


def counts_json(petition: Petition, counts: LiveCounts) -> str:
    """The body of ``/counts``, and the data of each ``/live`` event."""
    payload = _schema.dump(
        {
            "slug": petition.slug,
            "total": counts.total,
            "goal": petition.goal,
            "countries": [{"code": c, "count": n} for c, n in counts.top_countries()],
            "updated_at": counts.updated_at,
        }
    )
    return json.dumps(payload, separators=(",", ":"))


class CountsRenderer:
    def __init__(self, redis: Redis, layout: KeyLayout, *, ttl: float) -> None:
        self._redis = redis
        self._layout = layout
        self._cache: TTLCache[int, RenderedCounts] | None = (
            TTLCache(maxsize=10_000, ttl=ttl) if ttl > 0 else None
        )

    async def render(self, petition: Petition) -> RenderedCounts | None:
        """The body and its ETag, or None while the counters are being (re)built."""
        if self._cache is not None and (cached := self._cache.get(petition.id)):
            return cached
        counts = await read_counts(self._redis, self._layout, petition.id)
        if counts is None:
            return None
        body = counts_json(petition, counts).encode()
        rendered = RenderedCounts(body, hashlib.blake2b(body, digest_size=12).hexdigest())
        if self._cache is not None:
            self._cache[petition.id] = rendered
        return rendered
