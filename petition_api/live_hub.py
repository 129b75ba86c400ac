"""The live counts hub: ONE Redis subscription per API process, fanned out to the
Server-Sent Event streams it serves (petition_api/live.py is the HTTP side).

The worker publishes an update message (``counter_worker.counts.CountsUpdate``) on one
Redis channel after every change; on a Redis Cluster, where a script may publish only on a
sharded channel of its own slot, on each petition's channel (SPUBLISH), to which the hub
subscribes (SSUBSCRIBE) while it has streams of that petition. On a message the hub reads
the petition's counts once (and tells the process's counts renderer, so ``/counts`` renders it anew)
and hands the same event to every stream of that petition. Reads are coalesced: while
one is in flight, more messages only mark the petition to be read once more, so a burst
of changes costs two reads however many streams are open. A stream keeps only the latest
event it has not sent, so a slow client neither holds up the others nor piles up memory.

Event ids are the counters' update stamp (Redis time, microseconds): the same in every
process, so a browser reconnecting to another process with ``Last-Event-ID`` is not sent
what it has already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from counter_worker.counts import CountsUpdate, KeyLayout, LiveCounts, read_counts
from countersign_core.connections import TRANSIENT_ERRORS, RedisClient, create_redis
from countersign_domain.petitions import Petition
from petition_api import metrics
from petition_api.counts import CountsRenderer, counts_json

log = logging.getLogger("petition_api.live")

SUBSCRIBER_NAME = "countersign-live"
_MAX_BACKOFF = 5.0
# How long a read of sharded messages waits before the hub looks at who joined or left.
_SHARD_POLL = 0.25


@dataclass(frozen=True)
class LiveEvent:
    id: str
    # The event as sent: formatted once per change, not once per stream (the JSON data
    # has no line breaks, so it is one ``data:`` line).
    wire: bytes


def live_event(petition: Petition, counts: LiveCounts, breakdown_min: int) -> LiveEvent:
    stamp = round(counts.updated_at.timestamp() * 1_000_000) if counts.updated_at else 0
    data = counts_json(petition, counts, breakdown_min)
    return LiveEvent(id=str(stamp), wire=f"id: {stamp}\ndata: {data}\n\n".encode())


class LiveStream:
    """One connected browser: the latest event it has not been sent yet."""

    def __init__(self) -> None:
        self._pending: LiveEvent | None = None
        self._closed = False
        self._wake = asyncio.Event()

    def offer(self, event: LiveEvent) -> None:
        self._pending = event
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def next(self) -> LiveEvent | None:
        """The next event to send; None once the stream is closed."""
        while self._pending is None and not self._closed:
            await self._wake.wait()
            self._wake.clear()
        if self._closed:
            return None
        event, self._pending = self._pending, None
        return event


@dataclass
class _Audience:
    """The streams of one petition and the state of its reads."""

    petition: Petition
    streams: set[LiveStream] = field(default_factory=set)
    latest: LiveEvent | None = None
    stale: bool = False
    reading: asyncio.Task[None] | None = None


class LiveHub:
    def __init__(
        self,
        redis_url: str,
        reader: RedisClient,
        layout: KeyLayout,
        counts: CountsRenderer,
        *,
        breakdown_min: int,
    ) -> None:
        self._breakdown_min = breakdown_min
        # Named, so that operators (and tests) can find it in CLIENT LIST.
        self._subscriber = create_redis(redis_url, client_name=f"{SUBSCRIBER_NAME}:{layout.prefix}")
        self._reader = reader
        self._layout = layout
        self._counts = counts
        self._audiences: dict[int, _Audience] = {}
        self._audiences_changed = asyncio.Event()
        self._backoff = 0.1
        self._closing = False
        # How many times counts were read for streams (tests check the coalescing).
        self.reads = 0
        # Set while subscribed, once what changed before the subscription was dealt with.
        self.subscribed = asyncio.Event()

    # -- the subscription -------------------------------------------------------------

    async def run(self) -> None:
        """Hold the subscription until cancelled, reconnecting with back-off."""
        while True:
            try:
                if isinstance(self._subscriber, RedisCluster):
                    await self._follow_petition_channels(self._subscriber)
                else:
                    await self._follow_updates_channel(self._subscriber)
            except TRANSIENT_ERRORS as exc:
                self.subscribed.clear()
                log.warning(
                    "live subscription lost (%s); retrying in %.1fs",
                    type(exc).__name__,
                    self._backoff,
                )
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    async def _follow_updates_channel(self, subscriber: Redis) -> None:
        async with subscriber.pubsub() as pubsub:
            await pubsub.subscribe(self._layout.updates_channel)
            while True:
                message = await pubsub.get_message(timeout=10.0)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    # (Re)subscribed, redis-py's own reconnects included: what was
                    # published meanwhile is lost, so read everything again.
                    self._backoff = 0.1
                    self._counts.all_changed()
                    for audience in self._audiences.values():
                        self._refresh(audience)
                    self.subscribed.set()
                elif message["type"] == "message":
                    self._published(message["data"])

    async def _follow_petition_channels(self, subscriber: RedisCluster) -> None:
        channels: dict[str, int] = {}  # subscribed channel -> its petition
        async with subscriber.pubsub() as pubsub:
            while True:
                wanted = {self._layout.petition(p).updates: p for p in self._audiences}
                if joined := [channel for channel in wanted if channel not in channels]:
                    await pubsub.ssubscribe(*joined)
                if left := [channel for channel in channels if channel not in wanted]:
                    await pubsub.sunsubscribe(*left)
                channels = wanted
                self._audiences_changed.clear()
                if not channels:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._audiences_changed.wait(), 10.0)
                    continue
                # redis-py follows the channels' slots to their new owners after a
                # failover, and subscribes there again (an "ssubscribe" message).
                message = await pubsub.get_sharded_message(timeout=_SHARD_POLL)
                if message is None:
                    continue
                if message["type"] == "ssubscribe":  # as above, per channel
                    self._backoff = 0.1
                    petition_id = channels.get(message["channel"], 0)
                    self._counts.changed(petition_id)
                    audience = self._audiences.get(petition_id)
                    if audience is not None:
                        self._refresh(audience)
                    self.subscribed.set()
                elif message["type"] == "smessage":
                    self._published(message["data"])

    def _published(self, data: str) -> None:
        update = CountsUpdate.decode(data)
        if update is None:
            return
        self._counts.changed(update.petition_id)
        audience = self._audiences.get(update.petition_id)
        if audience is not None:
            self._refresh(audience)

    # -- reads and fan-out ------------------------------------------------------------

    def _refresh(self, audience: _Audience) -> None:
        audience.stale = True
        if audience.reading is None:
            audience.reading = asyncio.create_task(self._read(audience))

    async def _read(self, audience: _Audience) -> None:
        try:
            while audience.stale and audience.streams:
                audience.stale = False
                self.reads += 1
                try:
                    counts = await read_counts(self._reader, self._layout, audience.petition.id)
                except TRANSIENT_ERRORS as exc:
                    log.warning("live counts unreadable (%s); retrying", type(exc).__name__)
                    audience.stale = True
                    await asyncio.sleep(1.0)
                    continue
                if counts is None:  # being rebuilt: the rebuild publishes when done
                    continue
                event = live_event(audience.petition, counts, self._breakdown_min)
                if event != audience.latest:
                    audience.latest = event
                    for stream in audience.streams:
                        stream.offer(event)
        finally:
            audience.reading = None

    @contextmanager
    def watch(self, petition: Petition) -> Iterator[LiveStream]:
        """A stream of the petition's counts, starting with the current ones; counted in
        ``countersign_live_streams_open`` until the block ends."""
        with metrics.LIVE_STREAMS_OPEN.track_inprogress(), self._audience_of(petition) as stream:
            yield stream

    @contextmanager
    def _audience_of(self, petition: Petition) -> Iterator[LiveStream]:
        stream = LiveStream()
        if self._closing:
            stream.close()
            yield stream
            return
        audience = self._audiences.get(petition.id)
        if audience is None:
            audience = self._audiences[petition.id] = _Audience(petition)
            self._audiences_changed.set()
        audience.petition = petition
        audience.streams.add(stream)
        if audience.latest is not None:
            stream.offer(audience.latest)
        else:
            self._refresh(audience)
        try:
            yield stream
        finally:
            audience.streams.discard(stream)
            if not audience.streams and self._audiences.get(petition.id) is audience:
                del self._audiences[petition.id]
                self._audiences_changed.set()

    def stream_count(self) -> int:
        return sum(len(audience.streams) for audience in self._audiences.values())

    def end_streams(self) -> None:
        """Let every stream finish (shutdown): browsers reconnect to another process."""
        self._closing = True
        for audience in self._audiences.values():
            for stream in audience.streams:
                stream.close()

    async def close(self) -> None:
        self.end_streams()
        readings = [a.reading for a in self._audiences.values() if a.reading is not None]
        for reading in readings:
            reading.cancel()
        await asyncio.gather(*readings, return_exceptions=True)
        await self._subscriber.aclose()
