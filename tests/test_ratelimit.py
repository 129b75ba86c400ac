"""Abuse limits: rate limits in Redis, trusted proxies, disposable addresses, suspects."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import make_mocked_request
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.connections import create_redis
from countersign_core.settings import Rate, Settings
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.signatures import Hasher
from petition_api.abuse import AbuseChecks, is_disposable
from petition_api.app import create_app
from petition_api.client_address import client_address, limit_subject, parse_address
from petition_api.ratelimit import GCRA_SHA, Limit, RateLimiter
from tests.support.counts import assert_converges
from tests.support.factories import signature_rows, signer
from tests.support.http import SIGN, AiohttpClient, error_of
from tests.support.servers import PrivateRedis
from tests.support.values import TEST_SECRET
from tests.support.waiting import eventually


def limited(settings: Settings, **limits: Any) -> Settings:
    """The test settings without the loopback allow-list, so limits apply to the client."""
    return with_limits(settings, **{"allow": (), **limits})


def with_limits(settings: Settings, **limits: Any) -> Settings:
    return dataclasses.replace(settings, limits=dataclasses.replace(settings.limits, **limits))


async def suspect_reasons(pool: asyncpg.Pool) -> list[str | None]:
    return [row["suspect_reason"] for row in await signature_rows(pool)]


# -- the limiter ------------------------------------------------------------------------


@pytest.fixture
async def limiter(redis: Redis, layout: KeyLayout) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(redis, layout.prefix, timeout=1.0)
    yield limiter
    await limiter.close()


async def test_a_burst_of_count_then_refusals_with_the_wait(limiter: RateLimiter) -> None:
    limit = Limit("test:burst", (("burst", Rate(3, 60)),), "over")
    verdicts = [await limiter.check([limit]) for _ in range(5)]
    assert [v.exceeded for v in verdicts] == [None, None, None, "over", "over"]
    # 3 per minute: the next one fits 20 seconds after the first.
    assert 19 < verdicts[3].retry_after <= 20


async def test_a_refused_request_does_not_use_up_the_allowance(limiter: RateLimiter) -> None:
    limit = Limit("test:refill", (("rate", Rate(1, 0.3)),), "over")
    assert (await limiter.check([limit])).exceeded is None
    assert (await limiter.check([limit])).exceeded == "over"

    async def room() -> bool:
        return (await limiter.check([limit])).exceeded is None

    # Asking every 50 ms, six times per 300 ms interval: if refusals used up the allowance
    # there would never be room again.
    await eventually(room, timeout=5, interval=0.05)


async def test_every_window_must_have_room_and_the_first_full_one_is_named(
    limiter: RateLimiter, redis: Redis, layout: KeyLayout
) -> None:
    address = Limit("a", (("burst", Rate(5, 60)), ("day", Rate(2, 86400))), "address")
    # Slow enough that its key outlives the checks below (its TTL is one interval).
    overall = Limit("g", (("rate", Rate(100, 3600)),), "global")
    verdicts = [(await limiter.check([address, overall])).exceeded for _ in range(3)]
    assert verdicts == [None, None, "address"]
    keys = {key async for key in redis.scan_iter(match=f"{layout.prefix}:*")}
    # One hash tag per subject: a subject's windows share a Redis Cluster slot.
    assert keys == {
        f"{layout.prefix}:{{rl:a}}:burst",
        f"{layout.prefix}:{{rl:a}}:day",
        f"{layout.prefix}:{{rl:g}}:rate",
    }
    for key in keys:
        assert await redis.pttl(key) > 0  # they expire by themselves


async def test_checks_arriving_together_are_taken_in_their_order(limiter: RateLimiter) -> None:
    limit = Limit("test:together", (("burst", Rate(3, 60)),), "over")
    verdicts = await asyncio.gather(*(limiter.check([limit]) for _ in range(5)))
    assert [v.exceeded for v in verdicts] == [None, None, None, "over", "over"]
    assert all(19 < v.retry_after <= 20 for v in verdicts[3:])


async def test_a_request_refused_by_the_global_ceiling_still_counts_for_its_address(
    limiter: RateLimiter,
) -> None:
    overall = Limit("test:g", (("rate", Rate(2, 3600)),), "global")
    addresses = [Limit(f"test:a{n}", (("burst", Rate(1, 3600)),), "address") for n in range(4)]
    verdicts = await asyncio.gather(*(limiter.check([a, overall]) for a in addresses))
    assert [v.exceeded for v in verdicts] == [None, None, "global", "global"]
    # Each subject decided alone: the refused ones used up their addresses' room.
    assert [(await limiter.check([a])).exceeded for a in addresses] == ["address"] * 4


async def test_a_batch_calls_the_script_once_per_subject_and_loads_it_when_redis_lacks_it(
    private_redis: PrivateRedis, layout: KeyLayout
) -> None:
    redis = create_redis(private_redis.url)
    await private_redis.wait_up(redis)
    limiter = RateLimiter(redis, layout.prefix, timeout=5.0)

    async def script_calls() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    try:
        overall = Limit("g", (("rate", Rate(1000, 60)),), "global")
        for round_ in range(2):
            # A new Redis does not know the script; nor does one whose scripts were flushed.
            assert await redis.script_exists(GCRA_SHA) == [False]
            before = await script_calls()
            addresses = [Limit(f"a{round_}-{n}", (("b", Rate(5, 60)),), "addr") for n in range(8)]
            verdicts = await asyncio.gather(*(limiter.check([a, overall]) for a in addresses))
            assert [v.exceeded for v in verdicts] == [None] * 8
            # One batch: 8 address calls and 1 global call, each refused once (NOSCRIPT)
            # and made again once the script was loaded; not 16 global calls.
            assert await script_calls() - before == 2 * (8 + 1)
            await redis.script_flush()  # our own Redis server
    finally:
        await limiter.close()
        await redis.aclose()


# -- signing over the limits ------------------------------------------------------------


async def test_over_the_address_limit_signatures_are_stored_as_suspects_and_not_counted(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    petition_id: int,
    pool: asyncpg.Pool,
    worker: CounterWorker,
    redis: Redis,
    layout: KeyLayout,
) -> None:
    client = await aiohttp_client(create_app(limited(settings, ip_burst=Rate(3, 60))))
    responses = [await client.post(SIGN, json=signer(email=f"s{i}@example.org")) for i in range(5)]
    # Everyone gets the same answer: a bot learns nothing.
    assert [r.status for r in responses] == [201] * 5
    assert [await r.json() for r in responses] == [{"status": "counted"}] * 5
    assert await suspect_reasons(pool) == [
        None,
        None,
        None,
        "rate_limit_address",
        "rate_limit_address",
    ]
    await worker.drain()
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 3


async def test_reject_mode_answers_429_with_retry_after_and_stores_nothing(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, pool: asyncpg.Pool
) -> None:
    client = await aiohttp_client(
        create_app(limited(settings, ip_burst=Rate(2, 60), mode="reject"))
    )
    for i in range(2):
        assert (await client.post(SIGN, json=signer(email=f"s{i}@example.org"))).status == 201
    response = await client.post(SIGN, json=signer(email="third@example.org"))
    error = await error_of(response, 429)
    assert error["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert len(await signature_rows(pool)) == 2


async def test_the_address_limit_is_per_petition(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, pool: asyncpg.Pool
) -> None:
    await pool.execute(
        "INSERT INTO petitions (slug, title, status, require_confirmation)"
        " VALUES ('other', 'O', 'open', false)"
    )
    client = await aiohttp_client(create_app(limited(settings, ip_burst=Rate(1, 60))))
    assert (await client.post(SIGN, json=signer(email="a@example.org"))).status == 201
    other = "/v1/petitions/other/signatures"
    assert (await client.post(other, json=signer(email="a@example.org"))).status == 201
    assert await suspect_reasons(pool) == [None, None]


async def test_allow_listed_ranges_are_not_limited_by_address(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, pool: asyncpg.Pool
) -> None:
    university = (ipaddress.ip_network("127.0.0.0/24"),)
    client = await aiohttp_client(
        create_app(limited(settings, ip_burst=Rate(1, 60), allow=university))
    )
    for i in range(4):
        assert (await client.post(SIGN, json=signer(email=f"s{i}@example.org"))).status == 201
    assert await suspect_reasons(pool) == [None] * 4


async def test_the_global_ceiling_holds_for_everyone(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, pool: asyncpg.Pool
) -> None:
    # Allow-listed addresses too: the ceiling protects the service, not a petition.
    client = await aiohttp_client(create_app(with_limits(settings, overall=Rate(2, 60))))
    for i in range(3):
        assert (await client.post(SIGN, json=signer(email=f"s{i}@example.org"))).status == 201
    assert await suspect_reasons(pool) == [None, None, "rate_limit_global"]


async def test_a_partner_key_has_its_own_limit(
    settings: Settings, redis: Redis, layout: KeyLayout, pool: asyncpg.Pool
) -> None:
    checks = AbuseChecks(
        dataclasses.replace(settings.limits, partner=Rate(2, 60)),
        RateLimiter(redis, layout.prefix, timeout=1.0),
        DailyIpKeys(pool, Hasher(TEST_SECRET)),
    )

    async def assess(partner: str) -> str | None:
        return await checks.assess(
            petition_id=1, client=None, email="a@example.org", partner=partner
        )

    assert [await assess("key-1") for _ in range(3)] == [None, None, "rate_limit_partner"]
    assert await assess("key-2") is None


# -- where the client address comes from ---------------------------------------------------

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


def address_of(peer: str, forwarded: str | None, trusted: Any = TRUSTED) -> str | None:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    # `remote` is the TCP peer, as the server saw it.
    request = make_mocked_request("POST", "/", headers=headers).clone(remote=peer)
    found = client_address(request, trusted)
    return str(found) if found else None


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Not from a trusted proxy: the header is anyone's to forge, and is ignored.
        ("198.51.100.7", "203.0.113.1", "198.51.100.7"),
        # From a trusted proxy: the right-most address that is not a proxy of ours.
        ("10.0.0.2", "203.0.113.1", "203.0.113.1"),
        ("10.0.0.2", "6.6.6.6, 203.0.113.1, 10.0.0.9", "203.0.113.1"),
        ("127.0.0.1", "203.0.113.1,10.1.1.1", "203.0.113.1"),
        # Only proxies: the furthest one is all we know.
        ("10.0.0.2", "10.0.0.3", "10.0.0.3"),
        # No header, or garbage in it: nothing beyond the last good hop is believed.
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "203.0.113.1, not-an-address", "10.0.0.2"),
        # Ports, brackets and IPv4-mapped IPv6, as proxies write them.
        ("10.0.0.2", "203.0.113.1:5555", "203.0.113.1"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:10.0.0.2", "::ffff:203.0.113.1", "203.0.113.1"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert address_of(peer, forwarded) == expected


def test_no_trusted_proxies_means_the_header_is_never_believed() -> None:
    assert address_of("10.0.0.2", "203.0.113.1", trusted=()) == "10.0.0.2"


def test_ipv6_clients_are_limited_by_their_64() -> None:
    first = parse_address("2001:db8:1:2::1")
    second = parse_address("2001:db8:1:2:ffff::9")
    assert first is not None
    assert second is not None
    assert limit_subject(first) == limit_subject(second) == "2001:db8:1:2::/64"
    assert limit_subject(ipaddress.IPv4Address("192.0.2.1")) == "192.0.2.1"


async def test_behind_a_trusted_proxy_each_client_has_its_own_limit_and_hash(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, pool: asyncpg.Pool
) -> None:
    proxy = (ipaddress.ip_network("127.0.0.1/32"),)
    behind_proxy = dataclasses.replace(
        settings, api=dataclasses.replace(settings.api, trusted_proxies=proxy)
    )
    client = await aiohttp_client(create_app(limited(behind_proxy, ip_burst=Rate(1, 60))))
    for i, address in enumerate(["203.0.113.1", "203.0.113.2", "203.0.113.1"]):
        response = await client.post(
            SIGN, json=signer(email=f"s{i}@example.org"), headers={"X-Forwarded-For": address}
        )
        assert response.status == 201
    rows = await signature_rows(pool)
    assert [row["suspect_reason"] for row in rows] == [None, None, "rate_limit_address"]
    today = await DailyIpKeys(pool, Hasher(TEST_SECRET)).today()
    assert [row["ip_hash"] for row in rows] == [
        today.ip("203.0.113.1"),
        today.ip("203.0.113.2"),
        today.ip("203.0.113.1"),
    ]


async def test_a_forged_header_from_an_untrusted_peer_changes_nothing(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, pool: asyncpg.Pool
) -> None:
    client = await aiohttp_client(create_app(limited(settings, ip_burst=Rate(1, 60))))
    for i in range(3):
        forged = {"X-Forwarded-For": f"198.51.100.{i}"}
        response = await client.post(SIGN, json=signer(email=f"s{i}@example.org"), headers=forged)
        assert response.status == 201
    rows = await signature_rows(pool)
    assert [row["suspect_reason"] for row in rows] == [
        None,
        "rate_limit_address",
        "rate_limit_address",
    ]
    today = await DailyIpKeys(pool, Hasher(TEST_SECRET)).today()
    assert {row["ip_hash"] for row in rows} == {today.ip("127.0.0.1")}


async def test_rate_limit_keys_name_no_address(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    petition_id: int,
    redis: Redis,
    layout: KeyLayout,
) -> None:
    client = await aiohttp_client(create_app(limited(settings)))
    assert (await client.post(SIGN, json=signer())).status == 201
    keys = [key async for key in redis.scan_iter(match=f"{layout.prefix}:*")]
    assert any("{rl:ip:" in key for key in keys)
    assert not any("127.0.0.1" in key for key in keys)


# -- disposable addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "disposable"),
    [
        ("someone@mailinator.com", True),
        ("someone@MAILINATOR.com.", True),
        ("someone@eu.mailinator.com", True),  # a subdomain of a listed domain
        ("someone@example.org", False),
        ("someone@gmail.com", False),
    ],
)
def test_disposable_domains(email: str, disposable: bool) -> None:
    assert is_disposable(email) is disposable


async def test_a_disposable_address_is_held_as_suspect_not_refused(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    petition_id: int,
    pool: asyncpg.Pool,
    worker: CounterWorker,
    redis: Redis,
    layout: KeyLayout,
) -> None:
    # Not refused even where over-limit signatures are.
    client = await aiohttp_client(create_app(with_limits(settings, mode="reject")))
    response = await client.post(SIGN, json=signer(email="throwaway@mailinator.com"))
    assert response.status == 201
    assert await response.json() == {"status": "counted"}
    assert await suspect_reasons(pool) == ["disposable_email"]
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, petition_id)).total == 0
