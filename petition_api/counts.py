"""The ``/counts`` body, rendered from Redis and shared by a process's readers.

A popular petition's counter is read thousands of times a second by display widgets.
Each process renders it once per change (the live hub tells it of each: ``changed``),
and at least once per ``ttl`` should a message be lost: one Redis round trip then,
however many readers, also those that arrive while it is in Redis. The body, its ETag
and its headers are made once per rendering; clients cache it longer anyway
(``Cache-Control: max-age``).

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

from cachetools import LRUCache
from multidict import CIMultiDict, CIMultiDictProxy

from counter_worker.counts import KeyLayout, LiveCounts, read_counts
from countersign_core.caching import FreshValues, Missing
from countersign_core.connections import TRANSIENT_ERRORS, RedisClient
from countersign_core.logs import OutageNotice
from countersign_domain.petitions import Petition
from petition_api import metrics
from petition_api.schemas import CountsSchema

log = logging.getLogger("petition_api.counts")

_schema = CountsSchema()


Headers = CIMultiDictProxy[str]


@dataclass(frozen=True)
class RenderedCounts:
    body: bytes
    etag: str
    stale: bool
    # The answer's headers (with the body, and on a 304), made once.
    headers: Headers
    not_modified_headers: Headers
    # The same figures, for pages that show them (the petition page, its share card).
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False)


def counts_payload(petition: Petition, counts: LiveCounts, breakdown_min: int) -> dict[str, Any]:
    """What the public sees: the total, the goal (the next goal once it is reached), and
    the countries with the small ones folded into "other"
    (``counter_worker.counts.fold_small_groups``)."""
    countries = counts.public_countries(breakdown_min)
    payload: dict[str, Any] = _schema.dump(
        {
            "slug": petition.slug,
            "total": counts.total,
            "goal": petition.shown_goal(counts.total),
            "countries": [{"code": c, "count": n} for c, n in countries],
            "updated_at": counts.updated_at,
        }
    )
    return payload


def _json(payload: dict[str, Any], *, stale: bool) -> str:
    return json.dumps({**payload, "stale": stale}, separators=(",", ":"))


def counts_json(petition: Petition, counts: LiveCounts, breakdown_min: int) -> str:
    """The body of ``/counts``, and the data of each ``/live`` event."""
    return _json(counts_payload(petition, counts, breakdown_min), stale=False)


def _headers(**headers: str) -> Headers:
    return CIMultiDictProxy(CIMultiDict(headers))


class CountsRenderer:
    def __init__(
        self,
        redis: RedisClient,
        layout: KeyLayout,
        *,
        ttl: float,
        max_age: int,
        breakdown_min: int,
        timeout: float | None = None,
    ) -> None:
        self._redis = redis
        self._layout = layout
        self._breakdown_min = breakdown_min
        self._timeout = timeout
        self._fresh: FreshValues[int, RenderedCounts | None] = FreshValues(ttl=ttl)
        # The last figures rendered per petition, already marked stale.
        self._last_known: LRUCache[int, RenderedCounts] = LRUCache(maxsize=10_000)
        self._outage = OutageNotice(log, "counts served from memory, marked stale")
        self._cache_control = f"public, max-age={max_age}"
        # How many times counts were read from Redis (tests check the single flight).
        self.reads = 0

    async def render(self, petition: Petition) -> RenderedCounts | None:
        """The body, its ETag and headers; the last known (stale) one if Redis cannot say;
        None if there is none."""
        return await self._fresh.get(petition.id, lambda: self._read(petition), keep=_fresh_figures)

    def cached(self, petition_id: int) -> RenderedCounts | Missing | None:
        """What ``render`` would answer from memory now, or MISSING (then ``render``)."""
        return self._fresh.fresh(petition_id)

    def changed(self, petition_id: int) -> None:
        """The petition's counts changed: the next reader gets them rendered anew."""
        self._fresh.invalidate(petition_id)

    def all_changed(self) -> None:
        """Changes may have gone unheard (the live subscription was lost)."""
        self._fresh.invalidate_all()

    async def _read(self, petition: Petition) -> RenderedCounts | None:
        self.reads += 1
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
        payload = counts_payload(petition, counts, self._breakdown_min)
        self._last_known[petition.id] = self._rendered(payload, stale=True)
        return self._rendered(payload, stale=False)

    def _rendered(self, payload: dict[str, Any], *, stale: bool) -> RenderedCounts:
        body = _json(payload, stale=stale).encode()
        etag = hashlib.blake2b(body, digest_size=12).hexdigest()
        json_type = {"Content-Type": "application/json"}
        if stale:  # not to be cached, and no ETag to revalidate with
            headers = _headers(**json_type, **{"Cache-Control": "no-store"})
            return RenderedCounts(body, etag, stale, headers, headers, payload)
        validators = {"Cache-Control": self._cache_control, "ETag": f'"{etag}"'}
        return RenderedCounts(
            body,
            etag,
            stale,
            _headers(**json_type, **validators),
            _headers(**validators),
            payload,
        )


def _fresh_figures(rendered: RenderedCounts | None) -> bool:
    """Only figures Redis gave are kept: while it cannot, each render asks it again."""
    return rendered is not None and not rendered.stale
