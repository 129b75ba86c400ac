"""Live counts over Server-Sent Events, fanned out from one Redis subscription per process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse, web
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from counter_worker.counts import CountsUpdate
from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from petition_api.app import create_app
from petition_api.appkeys import LIVE
from petition_api.live_hub import SUBSCRIBER_NAME
from tests.support.factories import SLUG, add_signatures, signer
from tests.support.http import SIGN, AiohttpClient, Client, error_of
from tests.support.waiting import eventually

LIVE_PATH = f"/v1/petitions/{SLUG}/live"


@dataclass
class Block:
    """One block of an event stream: the fields up to a blank line."""

    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.fields["data"])
        return data


class Stream:
    def __init__(self, response: ClientResponse) -> None:
        self.response = response

    async def block(self, timeout: float = 20) -> Block:
        block = Block()
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise EOFError("the stream ended")
                line = line.rstrip("\r\n")
                if not line:
                    if block.fields or block.comments:
                        return block
                    continue
                if line.startswith(":"):
                    block.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    block.fields[name] = value.removeprefix(" ")

    async def until_closed(self) -> None:
        """Read until the server ends the stream (EOFError)."""
        while True:
            await self.block()

    async def event(self, timeout: float = 20) -> Block:
        """The next block with data (skipping retry hints and heartbeats)."""
        while "data" not in (block := await self.block(timeout)).fields:
            pass
        return block

    async def total(self, expected: int, timeout: float = 20) -> Block:
        """Events until one carries the expected total."""
        async with asyncio.timeout(timeout):
            while (event := await self.event()).counts["total"] != expected:
                pass
        return event


@pytest.fixture
async def app(settings: Settings, petition_id: int) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


@pytest.fixture
async def stream(client: Client, worker: CounterWorker) -> AsyncIterator[Stream]:
    await worker.drain()
    async with client.get(LIVE_PATH) as response:
        assert response.status == 200
        yield Stream(response)


async def subscribers(redis: Redis, layout: KeyLayout) -> int:
    [(_, count)] = await redis.pubsub_numsub(layout.updates_channel)
    return int(count)


async def test_a_stream_opens_with_the_current_counts_an_id_and_a_retry_hint(
    client: Client, worker: CounterWorker, pool: asyncpg.Pool, petition_id: int
) -> None:
    await add_signatures(pool, petition_id, 7, countries=("SY", "FR"))
    await worker.drain()
    async with client.get(LIVE_PATH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        reader = Stream(response)
        hint = await reader.block()
        assert 2000 <= int(hint.fields["retry"]) <= 6000
        event = await reader.event()
        assert event.fields["id"].isdigit()
        counts = await (await client.get(f"/v1/petitions/{SLUG}/counts")).json()
        assert event.counts == counts
        assert event.counts["total"] == 7


async def test_changes_are_pushed_as_the_worker_applies_them(
    client: Client, stream: Stream, worker: CounterWorker
) -> None:
    first = await stream.event()
    assert first.counts["total"] == 0
    assert (await client.post(SIGN, json=signer(country="LB"))).status == 201
    await worker.drain()
    pushed = await stream.total(1)
    # One signature is fewer than the public breakdown shows on its own.
    assert pushed.counts["countries"] == [{"code": "other", "count": 1}]
    assert int(pushed.fields["id"]) > int(first.fields["id"])


async def test_heartbeats_keep_the_stream_alive(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, worker: CounterWorker
) -> None:
    await worker.drain()
    api = dataclasses.replace(settings.api, live_heartbeat=0.2)
    client = await aiohttp_client(create_app(dataclasses.replace(settings, api=api)))
    async with client.get(LIVE_PATH) as response:
        reader = Stream(response)
        while not (block := await reader.block()).comments:
            pass
        assert block.comments == ["ping"]


async def test_a_reconnecting_browser_is_not_sent_what_it_has(
    client: Client, stream: Stream, worker: CounterWorker
) -> None:
    seen = await stream.event()
    async with client.get(LIVE_PATH, headers={"Last-Event-ID": seen.fields["id"]}) as response:
        again = Stream(response)
        assert (await client.post(SIGN, json=signer())).status == 201
        await worker.drain()
        # The first event on the new stream is the change, not the state it had.
        assert (await again.event()).counts["total"] == 1


async def test_unknown_and_draft_petitions_have_no_stream(
    client: Client, pool: asyncpg.Pool
) -> None:
    await error_of(await client.get("/v1/petitions/nope/live"), 404)
    await pool.execute("INSERT INTO petitions (slug, title) VALUES ('a-draft', 'Draft')")
    await error_of(await client.get("/v1/petitions/a-draft/live"), 404)


async def test_a_stream_waits_for_counts_being_built(client: Client, worker: CounterWorker) -> None:
    async with client.get(LIVE_PATH) as response:
        reader = Stream(response)
        await reader.block()  # the retry hint; no counts exist yet
        await worker.drain()  # builds them, and publishes
        assert (await reader.event()).counts["total"] == 0


async def test_many_streams_share_one_subscription_and_one_read_per_change(
    client: Client,
    app: web.Application,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
) -> None:
    other_id = await pool.fetchval(
        "INSERT INTO petitions (slug, title, status, require_confirmation)"
        " VALUES ('other', 'Other', 'open', false) RETURNING id"
    )
    await worker.drain()
    paths = [LIVE_PATH] * 40 + ["/v1/petitions/other/live"] * 20
    responses = [await client.get(path) for path in paths]
    try:
        streams = [Stream(response) for response in responses]
        for reader in streams:
            await reader.event()
        assert app[LIVE].stream_count() == 60
        assert await subscribers(redis, layout) == 1
        names = [c["name"] for c in await redis.client_list()]
        assert names.count(f"{SUBSCRIBER_NAME}:{layout.prefix}") == 1

        reads_before = app[LIVE].reads
        assert (await client.post(SIGN, json=signer())).status == 201
        await worker.drain()
        for reader in streams[:40]:
            assert (await reader.event()).counts["total"] == 1
        # Sixty streams, one change to one petition: one read for all forty of its streams.
        assert app[LIVE].reads - reads_before == 1

        await add_signatures(pool, other_id, 3)
        await worker.drain()
        for reader in streams[40:]:
            assert (await reader.event()).counts["total"] == 3
    finally:
        for response in responses:
            response.close()


async def test_a_burst_of_changes_is_read_a_few_times_not_once_per_change(
    client: Client,
    app: web.Application,
    stream: Stream,
    redis: Redis,
    layout: KeyLayout,
    petition_id: int,
    worker: CounterWorker,
) -> None:
    await stream.event()
    reads_before = app[LIVE].reads
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(300):
            pipe.publish(layout.updates_channel, CountsUpdate(petition_id, n).encode())
        await pipe.execute()
    # A real change after the burst: once the stream has it, the burst was handled.
    assert (await client.post(SIGN, json=signer())).status == 201
    await worker.drain()
    await stream.total(1)
    assert 1 <= app[LIVE].reads - reads_before < 30


async def test_the_subscription_comes_back_after_redis_drops_it(
    client: Client,
    stream: Stream,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
) -> None:
    await stream.event()
    name = f"{SUBSCRIBER_NAME}:{layout.prefix}"
    [subscriber] = [c for c in await redis.client_list() if c["name"] == name]
    await redis.client_kill_filter(_id=subscriber["id"])
    # Changed while the subscriber may be away: the resubscription reads it anyway.
    assert (await client.post(SIGN, json=signer())).status == 201
    await worker.drain()
    assert (await stream.total(1)).counts["total"] == 1

    async def resubscribed() -> bool:
        return await subscribers(redis, layout) == 1

    await eventually(resubscribed)
    assert (await client.post(SIGN, json=signer(email="two@example.org"))).status == 201
    await worker.drain()
    await stream.total(2)


async def test_shutdown_ends_the_streams(
    client: Client, app: web.Application, stream: Stream
) -> None:
    await stream.event()
    app[LIVE].end_streams()
    with pytest.raises(EOFError):
        await stream.until_closed()
    assert app[LIVE].stream_count() == 0


async def test_the_worker_publishes_the_update_message_the_api_reads(
    redis: Redis, layout: KeyLayout, pool: asyncpg.Pool, petition_id: int, worker: CounterWorker
) -> None:
    await worker.drain()
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(layout.updates_channel)
        await add_signatures(pool, petition_id, 4)
        await worker.drain()

        async def published() -> str:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            return str(message["data"]) if message else ""

        data = await eventually(published)
    assert CountsUpdate.decode(data) == CountsUpdate(petition_id, 4)


def streams_open() -> float:
    return REGISTRY.get_sample_value("countersign_live_streams_open") or 0.0


async def test_the_open_streams_gauge_follows_streams_opening_and_closing(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, worker: CounterWorker
) -> None:
    await worker.drain()
    # A short heartbeat: the server finds a hung-up browser when a ping fails to go out.
    api = dataclasses.replace(settings.api, live_heartbeat=0.2)
    app = create_app(dataclasses.replace(settings, api=api))
    client = await aiohttp_client(app)
    assert streams_open() == 0
    responses = [await client.get(LIVE_PATH) for _ in range(5)]
    try:
        for response in responses:
            await Stream(response).event()
        assert streams_open() == 5

        async def counted(expected: int) -> bool:
            return streams_open() == expected

        for response in responses[:3]:  # three browsers hang up
            response.close()
        await eventually(lambda: counted(2))
    finally:
        for response in responses:
            response.close()
    await eventually(lambda: counted(0))
    assert app[LIVE].stream_count() == 0
