"""Redis past one server: a primary with a replica under Sentinel, and a Redis Cluster,
started here with Debian's redis-server (7: sharded pub/sub) on free ports.

Failovers happen while signing goes on; afterwards Redis equals Postgres with nobody
running a command. Asynchronous replication may lose applications the old primary took
(tests/test_counter_sequence.py makes that loss certain); the applied-batch sequence finds
it, and the worker rebuilds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import aiohttp
import asyncpg
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from counter_worker.keys import KeyLayout
from counter_worker.scripts import Scripts
from counter_worker.worker import CounterWorker
from countersign_core.connections import create_redis
from countersign_core.redis_url import RedisTarget
from countersign_core.settings import Rate, Settings, SettingsError, load_settings
from petition_api.app import create_app
from petition_api.ratelimit import Limit, RateLimiter, window_key
from tests.support.counts import assert_converges
from tests.support.factories import SLUG, add_signatures, signer
from tests.support.http import SIGN, AiohttpClient, error_of
from tests.support.processes import (
    ApiProcess,
    ServiceProcess,
    SpawnApi,
    SpawnWorker,
    countersign,
)
from tests.support.servers import RedisClusterServers, RedisSentinelGroup
from tests.support.waiting import eventually


async def sign_while(pool: asyncpg.Pool, petition_id: int, done: asyncio.Event) -> int:
    """Sign in small batches until ``done`` is set, then ten more; how many signed."""
    signed = after = 0
    while after < 10:
        await add_signatures(pool, petition_id, 5)
        signed += 5
        after += done.is_set()
        await asyncio.sleep(0.02)
    return signed


async def api_total(api: ApiProcess) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{api.url}/v1/petitions/{SLUG}/counts") as response,
    ):
        total: int = (await response.json())["total"] if response.status == 200 else -1
        return total


def lost_batches_found(workers: list[ServiceProcess]) -> bool:
    return any("Redis lost applied batches" in worker.log() for worker in workers)


# -- Sentinel ---------------------------------------------------------------------------------


@pytest.fixture
async def sentinel_group(tmp_path: Path) -> AsyncIterator[RedisSentinelGroup]:
    group = RedisSentinelGroup(tmp_path / "sentinel")
    try:
        await group.start()
        yield group
    finally:
        group.stop()


async def test_a_sentinel_failover_while_signing_converges_by_itself(
    pool: asyncpg.Pool,
    layout: KeyLayout,
    petition_id: int,
    spawn: SpawnWorker,
    run_api: SpawnApi,
    worker_env: dict[str, str],
    sentinel_group: RedisSentinelGroup,
) -> None:
    redis = create_redis(sentinel_group.url)
    workers = [spawn(REDIS_URL=sentinel_group.url) for _ in range(2)]
    api = await run_api(REDIS_URL=sentinel_group.url)
    failed_over = asyncio.Event()
    signing = asyncio.create_task(sign_while(pool, petition_id, failed_over))
    try:
        await asyncio.sleep(0.5)
        before = await sentinel_group.primary_port()
        await sentinel_group.failover()
        failed_over.set()
        signed = await signing
        assert await sentinel_group.primary_port() != before

        truth = await assert_converges(pool, redis, layout, petition_id, timeout=40)
        assert truth.total == signed
        for worker in workers:
            worker.check_alive()

        async def api_agrees() -> bool:  # it reconnected through Sentinel
            return await api_total(api) == signed

        await eventually(api_agrees)
        print("lost applications found and rebuilt:", lost_batches_found(workers))
        # The command line speaks to Sentinel too.
        rebuilt = countersign("rebuild", env={**worker_env, "REDIS_URL": sentinel_group.url})
        assert rebuilt.stdout.strip() == "rebuilt the counters of 1 petition(s)", rebuilt.stderr
        assert (await assert_converges(pool, redis, layout, petition_id)).total == signed
    finally:
        signing.cancel()
        await redis.aclose()


# -- Cluster ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """Three primaries, each with a replica (the failover test, last, kills one)."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        servers.start()
        asyncio.run(servers.wait_healthy())
        yield servers
    finally:
        servers.stop()


@pytest.fixture
async def cluster_redis(cluster: RedisClusterServers) -> AsyncIterator[RedisCluster]:
    client = create_redis(cluster.url)
    assert isinstance(client, RedisCluster)
    yield client
    await client.aclose()


@pytest.fixture
def cluster_settings(settings: Settings, cluster: RedisClusterServers) -> Settings:
    return dataclasses.replace(settings, redis=dataclasses.replace(settings.redis, url=cluster.url))


async def more_petitions(pool: asyncpg.Pool, n: int) -> list[int]:
    """Open petitions counting at once: their keys spread over the cluster's slots."""
    rows = await pool.fetch(
        """INSERT INTO petitions (slug, title, status, require_confirmation)
           SELECT 'petition-' || g, 'Petition ' || g, 'open', false
           FROM generate_series(1, $1) AS g RETURNING id""",
        n,
    )
    return [row["id"] for row in rows]


async def test_every_script_keeps_its_keys_in_one_slot(
    cluster_redis: RedisCluster, layout: KeyLayout
) -> None:
    """Each script, called for real on the cluster (a key of another slot is refused
    with CROSSSLOT), and each call's keys hashed here as well."""
    keys = layout.petition(7)
    slot = key_slot(keys.total.encode())
    petition_keys = [v for v in dataclasses.asdict(keys).values() if isinstance(v, str)]
    assert {key_slot(key.encode()) for key in [*petition_keys, keys.batch_lease("b")]} == {slot}
    scripts = Scripts(cluster_redis, layout)
    token, rebuild_batch, batch = "worker-1", str(uuid4()), str(uuid4())
    await cluster_redis.set(keys.rebuild_lease, token)
    assert await scripts.invalidate(keys, token) == "invalidated"
    rebuilt = await scripts.rebuild(keys, 7, rebuild_batch, token, 0, {"SY": 2}, {"": 2}, [])
    assert rebuilt.status == "rebuilt"
    lease = keys.batch_lease(batch)
    await cluster_redis.set(lease, token)
    assert await scripts.renew_lease(lease, token, 5000)
    applied = await scripts.apply(keys, 7, batch, token, rebuilt.seq, {"FR": 1}, {"": 1})
    assert (applied.status, applied.seq) == ("applied", rebuilt.seq + 1)
    await scripts.forget_batch(keys, batch, token)
    await scripts.release_lease(keys.rebuild_lease, token)

    limiter = RateLimiter(cluster_redis, layout.prefix, timeout=2.0)
    address = Limit("ip:x", (("burst", Rate(2, 60)), ("day", Rate(5, 86400))), "address")
    overall = Limit("global", (("rate", Rate(100, 60)),), "global")
    windows = [window_key(layout.prefix, "ip:x", name) for name in ("burst", "day")]
    assert len({key_slot(key.encode()) for key in windows}) == 1
    verdicts = [(await limiter.check([address, overall])).exceeded for _ in range(3)]
    assert verdicts == [None, None, "address"]


async def test_exact_counts_on_a_cluster_with_workers_sharing_the_load(
    pool: asyncpg.Pool,
    cluster: RedisClusterServers,
    cluster_redis: RedisCluster,
    layout: KeyLayout,
    spawn: SpawnWorker,
) -> None:
    petitions = await more_petitions(pool, 6)
    assert len({key_slot(layout.petition(p).total.encode()) for p in petitions}) == 6
    workers = [spawn(REDIS_URL=cluster.url) for _ in range(2)]
    await asyncio.gather(*(add_signatures(pool, p, 40 * (i + 1)) for i, p in enumerate(petitions)))
    await pool.execute("DELETE FROM signatures WHERE country = 'RU'")
    for petition in petitions:
        await assert_converges(pool, cluster_redis, layout, petition)
    for worker in workers:
        worker.check_alive()


async def test_live_updates_and_rate_limits_through_the_api_on_a_cluster(
    aiohttp_client: AiohttpClient,
    cluster_settings: Settings,
    database_url: str,
    pool: asyncpg.Pool,
    cluster_redis: RedisCluster,
    layout: KeyLayout,
    petition_id: int,
) -> None:
    limits = dataclasses.replace(
        cluster_settings.limits, allow=(), mode="reject", ip_burst=Rate(3, 60)
    )
    client = await aiohttp_client(create_app(dataclasses.replace(cluster_settings, limits=limits)))
    assert (await client.get("/readyz")).status == 200
    worker = CounterWorker(database_url, pool, cluster_redis, layout, cluster_settings.worker)
    await worker.drain()
    async with client.get(f"/v1/petitions/{SLUG}/live") as stream:
        assert stream.status == 200

        async def next_total() -> int:
            while not (line := (await stream.content.readline()).decode()).startswith("data:"):
                pass
            total: int = json.loads(line.removeprefix("data:"))["total"]
            return total

        async with asyncio.timeout(20):
            assert await next_total() == 0
            statuses = []
            for n in range(4):
                response = await client.post(SIGN, json=signer(email=f"s{n}@example.org"))
                statuses.append(response.status)
            assert statuses == [201, 201, 201, 429]
            await error_of(response, 429)
            await worker.drain()
            while await next_total() != 3:
                pass


async def test_a_primary_killed_while_signing_converges_by_itself(
    pool: asyncpg.Pool,
    cluster: RedisClusterServers,
    cluster_redis: RedisCluster,
    layout: KeyLayout,
    petition_id: int,
    spawn: SpawnWorker,
) -> None:
    workers = [spawn(REDIS_URL=cluster.url) for _ in range(2)]
    failed_over = asyncio.Event()
    signing = asyncio.create_task(sign_while(pool, petition_id, failed_over))
    try:
        await asyncio.sleep(0.5)
        # SIGKILL, until its replica serves its slots.
        await cluster.kill_primary_of(cluster_redis, layout.petition(petition_id).total)
        failed_over.set()
        signed = await signing
        truth = await assert_converges(pool, cluster_redis, layout, petition_id, timeout=40)
        assert truth.total == signed
        for worker in workers:
            worker.check_alive()
        print("lost applications found and rebuilt:", lost_batches_found(workers))
    finally:
        signing.cancel()


def test_the_redis_url_forms() -> None:
    sentinel = RedisTarget.parse("redis+sentinel://:pw@a:1,b/mymaster/2?sentinel_password=s")
    assert (sentinel.kind, sentinel.nodes, sentinel.service, sentinel.db) == (
        "sentinel",
        (("a", 1), ("b", 26379)),
        "mymaster",
        2,
    )
    assert (sentinel.password, sentinel.sentinel_auth) == ("pw", {"password": "s"})
    assert "pw" not in repr(sentinel)
    cluster = RedisTarget.parse("rediss+cluster://h1:7000,[::1]:7001")
    assert (cluster.kind, cluster.nodes, cluster.tls) == (
        "cluster",
        (("h1", 7000), ("::1", 7001)),
        True,
    )
    for bad, reason in [
        ("redis+cluster://h/1", "names no database"),
        ("redis+sentinel://h", "ends with /service_name"),
        ("redis+sentinel://h:0/s", "a port must be"),
    ]:
        with pytest.raises(ValueError, match=reason):
            RedisTarget.parse(bad)


def test_a_malformed_redis_url_is_refused_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://:hunter2@a:1,b:2")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "Sentinel URL ends with /service_name" in str(raised.value)
    assert "hunter2" not in str(raised.value)
