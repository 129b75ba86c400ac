"""The ``/counts`` body, rendered from Redis and shared by a process's readers.

A popular petition's counter is read thousands of times a second by display widgets.
Each process renders it at most once per ``ttl``: one Redis round trip then, however
many readers; clients cache it longer anyway (``Cache-Control: max-age``).

When Redis does not answer, or has lost the counters (restarted empty, being rebuilt),
readers get the last figures this process rendered, marked ``"stale": true``: a widget
keeps showing a number instead of an error. Only a process that never had them says 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache
from redis.asyncio import Redis

from counter_worker.counts import KeyLayout, LiveCounts, read_counts
from countersign_core.connections import TRANSIENT_ERRORS
from countersign_core.logs import OutageNotice
from countersign_domain.petitions import Petition
from petition_api import metrics
from petition_api.schemas import CountsSchema

log = logging.getLogger("petition_api.counts")

_schema = CountsSchema()


@dataclass(frozen=True)
class RenderedCounts:
    body: bytes
    etag: str
    stale: bool = False
    # The same figures, for pages that show them (the petition page, its share card).
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False)


def counts_payload(petition: Petition, counts: LiveCounts) -> dict[str, Any]:
    payload: dict[str, Any] = _schema.dump(
        {
            "slug": petition.slug,
            "total": counts.total,
            "goal": petition.goal,
            "countries": [{"code": c, "count": n} for c, n in counts.top_countries()],
            "updated_at": counts.updated_at,
        }
    )
    return payload


def _json(payload: dict[str, Any], *, stale: bool) -> str:
    return json.dumps({**payload, "stale": stale}, separators=(",", ":"))


def counts_json(petition: Petition, counts: LiveCounts) -> str:
    """The body of ``/counts``, and the data of each ``/live`` event."""
    return _json(counts_payload(petition, counts), stale=False)


def _render(payload: dict[str, Any], *, stale: bool) -> RenderedCounts:
    body = _json(payload, stale=stale).encode()
    etag = hashlib.blake2b(body, digest_size=12).hexdigest()
    return RenderedCounts(body, etag, stale, payload)


class CountsRenderer:
    def __init__(
        self, redis: Redis, layout: KeyLayout, *, ttl: float, timeout: float | None = None
    ) -> None:
        self._redis = redis
        self._layout = layout
        self._timeout = timeout
        self._cache: TTLCache[int, RenderedCounts] | None = (
            TTLCache(maxsize=10_000, ttl=ttl) if ttl > 0 else None
        )
        # The last figures rendered per petition, already marked stale.
        self._last_known: LRUCache[int, RenderedCounts] = LRUCache(maxsize=10_000)
        self._outage = OutageNotice(log, "counts served from memory, marked stale")

    async def render(self, petition: Petition) -> RenderedCounts | None:
        """The body and its ETag; the last known (stale) one if Redis cannot say; None if
        there is none."""
        if self._cache is not None and (cached := self._cache.get(petition.id)):
            return cached
        try:
            async with asyncio.timeout(self._timeout):
                counts = await read_counts(self._redis, self._layout, petition.id)
        except TRANSIENT_ERRORS as exc:
            self._outage.failed(exc)
            counts = None
        else:
            self._outage.recovered()
        if counts is None:
            stale = self._last_known.get(petition.id)
            if stale is not None:
                metrics.COUNTS_SERVED_STALE.inc()
            return stale
        payload = counts_payload(petition, counts)
        rendered = _render(payload, stale=False)
        self._last_known[petition.id] = _render(payload, stale=True)
        if self._cache is not None:
            self._cache[petition.id] = rendered
        return rendered
