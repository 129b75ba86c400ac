"""Client address hashes under daily random keys, destroyed after the retention window:
within it, abuse checks and the ip-hashes search group a day's signatures from one
address; after it, nobody, not even whoever holds the secret key and a dump of the
database, can tell which address a stored hash (or a rate limit key) was for."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
from datetime import date, timedelta
from typing import cast

import asyncpg
import pytest
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.settings import Rate, Settings
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.signatures import Hasher
from petition_api.app import create_app
from tests.support.factories import SLUG, StaffTokens, signature_rows, signer
from tests.support.http import ADMIN, SIGN, AiohttpClient, Client, bearer
from tests.support.processes import SpawnWorker
from tests.support.values import TEST_SECRET
from tests.support.waiting import eventually

VICTIM = "198.51.100.77"
PROXY = (ipaddress.ip_network("127.0.0.1/32"),)
HASHER = Hasher(TEST_SECRET)


def candidate_addresses() -> list[str]:
    """What an attacker tries: here the victim's /24 (the whole IPv4 space takes minutes)."""
    return [str(address) for address in ipaddress.ip_network("198.51.100.0/24")]


async def recover(pool: asyncpg.Pool, stored: bytes) -> str | None:
    """The attack of issue 10: the secret key, a dump of the database, and every address
    tried, under the secret key alone and under every day key the dump holds."""
    keys = [row["key"] for row in await pool.fetch("SELECT key FROM ip_hash_keys")]
    for address in candidate_addresses():
        unsealed = HASHER.ip(address)
        if unsealed == stored:
            return address
        for key in keys:
            if key is not None and hmac.digest(key, unsealed, hashlib.sha256) == stored:
                return address
    return None


async def let_days_pass(pool: asyncpg.Pool, days: int) -> None:
    """Everything happened ``days`` earlier: the tests' clock, instead of waiting."""
    await pool.execute("UPDATE ip_hash_keys SET day = day - $1::integer", days)
    await pool.execute(
        "UPDATE signatures SET created_at = created_at - $1::interval", timedelta(days=days)
    )


@pytest.fixture
async def proxied(aiohttp_client: AiohttpClient, settings: Settings, petition_id: int) -> Client:
    """The API behind a trusted proxy (the test client), with per-address limits on: at
    most 2 signatures a minute from one address."""
    return await aiohttp_client(
        create_app(
            dataclasses.replace(
                settings,
                api=dataclasses.replace(settings.api, trusted_proxies=PROXY),
                limits=dataclasses.replace(settings.limits, allow=(), ip_burst=Rate(2, 60)),
            )
        )
    )


async def sign_from(client: Client, address: str, email: str) -> None:
    response = await client.post(
        SIGN, json=signer(email=email), headers={"X-Forwarded-For": address}
    )
    assert response.status == 201


async def test_after_the_window_nobody_can_recover_a_stored_address(
    proxied: Client,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
) -> None:
    await sign_from(proxied, VICTIM, "victim@example.org")
    [row] = await signature_rows(pool)
    # Redis names the victim's rate limits by a hash the secret key alone cannot make.
    names = [key async for key in redis.scan_iter(match=f"{layout.prefix}:*")]
    unsealed = HASHER.rate_limit_subject(VICTIM).hex()[:32]
    today = await DailyIpKeys(pool, HASHER).today()
    assert any(today.rate_limit_subject(VICTIM) in name for name in names)
    assert not any(unsealed in name for name in names)
    # Within the window the key exists: with the secret key and the database, the address
    # can be tested (the README says so).
    assert row["ip_hash"] != HASHER.ip(VICTIM)
    assert await recover(pool, row["ip_hash"]) == VICTIM

    await let_days_pass(pool, worker.config.ip_hash_retention_days - 1)
    assert await worker.destroy_expired_ip_keys() == 0  # one more day to go
    await let_days_pass(pool, 1)
    assert await worker.destroy_expired_ip_keys() == 1
    [key] = await pool.fetch("SELECT * FROM ip_hash_keys")
    assert key["key"] is None
    assert key["destroyed_at"] is not None
    assert await recover(pool, row["ip_hash"]) is None


async def test_within_a_day_one_address_groups_for_staff_and_abuse_checks(
    proxied: Client, pool: asyncpg.Pool, staff: StaffTokens
) -> None:
    client = proxied
    for i in range(3):
        await sign_from(client, VICTIM, f"bot{i}@example.org")
    await sign_from(client, "198.51.100.78", "someone@example.org")
    rows = await signature_rows(pool)
    assert [row["suspect_reason"] for row in rows] == [None, None, "rate_limit_address", None]

    headers = bearer(staff.admin)
    listed = await client.get(f"{ADMIN}/petitions/{SLUG}/ip-hashes", headers=headers)
    [group] = (await listed.json())["ip_hashes"]
    assert group["signatures"] == 3
    invalidated = await client.post(
        f"{ADMIN}/petitions/{SLUG}/invalidations",
        json={"ip_hash": group["ip_hash"], "reason": "one machine"},
        headers=headers,
    )
    assert (await invalidated.json())["invalidated"] == 3


async def test_a_new_day_brings_a_new_key_and_the_api_keeps_it_for_the_day(
    pool: asyncpg.Pool,
) -> None:
    days = iter([date(2026, 3, 1), date(2026, 3, 1), date(2026, 3, 2)])
    keys = DailyIpKeys(pool, HASHER, clock=lambda: next(days))
    first = await keys.today()
    await pool.execute("UPDATE ip_hash_keys SET key = NULL, destroyed_at = now()")
    assert await keys.today() is first  # kept in memory: no read per request
    second = await keys.today()
    assert second.day == date(2026, 3, 2)
    assert second.key != first.key
    assert second.ip(VICTIM) != first.ip(VICTIM)
    # Two processes on one day agree on its key.
    again = await DailyIpKeys(pool, HASHER, clock=lambda: date(2026, 3, 2)).today()
    assert again.key == second.key


async def test_the_running_worker_destroys_keys_past_the_setting(
    pool: asyncpg.Pool, spawn: SpawnWorker
) -> None:
    today = await DailyIpKeys(pool, HASHER).today()
    await pool.execute(
        "INSERT INTO ip_hash_keys (day, key) VALUES ($1, $2), ($3, $2)",
        today.day - timedelta(days=2),
        today.key,
        today.day - timedelta(days=1),
    )
    spawn(COUNTERSIGN_IP_HASH_RETENTION_DAYS="2")

    async def destroyed() -> list[date] | None:
        rows = await pool.fetch("SELECT day FROM ip_hash_keys WHERE key IS NULL ORDER BY day")
        return [row["day"] for row in rows] or None

    assert await eventually(destroyed, timeout=30) == [today.day - timedelta(days=2)]
    assert await pool.fetchval("SELECT count(*) FROM ip_hash_keys WHERE key IS NOT NULL") == 2


async def test_requests_arriving_while_the_days_key_is_read_share_the_read(
    pool: asyncpg.Pool,
) -> None:
    class CountingPool:
        def __init__(self) -> None:
            self.reads = 0

        async def execute(self, *args: object) -> str:
            return str(await pool.execute(*args))

        async def fetchval(self, *args: object) -> object:
            self.reads += 1
            return await pool.fetchval(*args)

    counting = CountingPool()
    keys = DailyIpKeys(cast(asyncpg.Pool, counting), HASHER, clock=lambda: date(2026, 4, 1))
    found = await asyncio.gather(*(keys.today() for _ in range(20)))
    assert counting.reads == 1
    assert all(key is found[0] for key in found)
