"""One mailbox, one signature, however its address is spelled: Unicode NFC for the local
part, IDNA 2008 with the UTS #46 mapping for the domain. Migration 006 hashes every
stored address again (``countersign migrate``, which holds the secret key), merges
what now collides with the counts staying exact, and seals the stored IP hashes."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.connections import create_pg_pool
from countersign_core.migrations import MigrationError, migrate, migrations_dir
from countersign_core.settings import WorkerConfig
from countersign_domain.identity_migration import MIGRATION
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.moderation import erase_address
from countersign_domain.signatures import Hasher, canonical_email
from tests.support.counts import assert_converges
from tests.support.factories import StaffTokens, signature_rows, signer
from tests.support.http import ADMIN, SIGN, Client, bearer
from tests.support.processes import countersign
from tests.support.servers import Servers, throwaway_database
from tests.support.values import LEASE_MS, TEST_SECRET

QUICK_WORKER = WorkerConfig(
    batch_size=5000,
    poll_interval=0.1,
    pace=0.0,
    lease_ms=LEASE_MS,
    shutdown_grace=10.0,
    ip_hash_retention_days=30,
    signature_log=False,
    log_signing_key=None,
)

# Each pair made two counted signatures before the canonical form followed the standards.
EQUIVALENT = [
    ("dup@example.org", "dup@\uff45xample.org"),  # a full-width e
    ("dup@example.org", "dup@examp\u00adle.org"),  # a soft hyphen
    ("dup@example.org", "Dup@EXAMPLE.org"),
    ("idn@b\u00fccher.example", "idn@xn--bcher-kva.example"),  # Unicode and ASCII forms
    ("idn@B\u00dcCHER.example", "idn@bu\u0308cher.example"),  # case; a combining diaeresis
    ("jos\u00e9@example.org", "jose\u0301@example.org"),  # composed and decomposed
    ("JOS\u00c9@example.org", "jos\u00e9@example.org"),
]


@pytest.mark.parametrize(("first", "again"), EQUIVALENT)
def test_equivalent_spellings_have_one_canonical_form(first: str, again: str) -> None:
    assert canonical_email(first) == canonical_email(again)


def test_distinct_mailboxes_stay_apart() -> None:
    assert canonical_email("jos\u00e9@example.org") != canonical_email("jose@example.org")
    assert canonical_email("idn@b\u00fccher.example") != canonical_email("idn@bucher.example")
    # A domain IDNA refuses still folds case and width, and stays itself.
    assert canonical_email("x@EX_AMPLE.org") == canonical_email("x@ex_ample.org")
    assert canonical_email("x@ex_ample.org") != canonical_email("x@example.org")


@pytest.mark.parametrize(("first", "again"), EQUIVALENT)
async def test_an_equivalent_spelling_signs_once_and_erasing_either_erases_it(
    client: Client, pool: asyncpg.Pool, staff: StaffTokens, first: str, again: str
) -> None:
    first_answer = await client.post(SIGN, json=signer(email=first))
    second_answer = await client.post(SIGN, json=signer(email=again, name="Someone Else"))
    assert first_answer.status == second_answer.status == 201
    [row] = await signature_rows(pool)
    assert row["name"] == "Amal Haddad"

    erased = await client.post(
        f"{ADMIN}/erasures", json={"email": again}, headers=bearer(staff.admin)
    )
    assert await erased.json() == {"erased": 1, "petitions": 1}
    [row] = await signature_rows(pool)
    assert (row["email"], row["email_hash"], row["erased_at"] is not None) == (None, None, True)


# -- migration 006 ----------------------------------------------------------------------------


def old_canonical_email(email: str) -> str:
    """How addresses were made canonical before migration 006 (case, +tags, Gmail dots)."""
    local, _, domain = email.strip().lower().rpartition("@")
    domain = domain.rstrip(".")
    if domain in {"gmail.com", "googlemail.com"}:
        domain, local = "gmail.com", local.replace(".", "")
    return f"{local.split('+', 1)[0] or local}@{domain}"


def old_email_hash(email: str) -> bytes:
    key = hmac.digest(TEST_SECRET.encode(), b"countersign email v1", hashlib.sha256)
    return hmac.digest(key, old_canonical_email(email).encode(), hashlib.sha256)


HASHER = Hasher(TEST_SECRET)
NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=40)


@pytest.fixture
async def url_before_006(servers: Servers, tmp_path: Path) -> AsyncIterator[str]:
    """A database migrated up to 005, as deployments were before this change, plus the
    tables today's counter worker needs to drain it (sql/012_scale.sql, which touches
    nothing 006 does)."""
    earlier = tmp_path / "sql"
    earlier.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if path.name < MIGRATION or path.name == "012_scale.sql":
            shutil.copy(path, earlier)
    async with throwaway_database(servers) as url:
        conn = await asyncpg.connect(url)
        await migrate(conn, earlier)
        await conn.close()
        yield url


@pytest.fixture
async def before_006(url_before_006: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pg_pool(url_before_006)
    yield pool
    await pool.close()


async def insert_old(
    pool: asyncpg.Pool,
    petition_id: int,
    email: str,
    *,
    country: str = "FR",
    minutes: int = 0,
    confirmed: bool = True,
    suspect: str | None = None,
    ip: str | None = None,
    at: datetime = NOW,
) -> int:
    """A signature stored as the code before migration 006 stored it."""
    signature_id: int = await pool.fetchval(
        """INSERT INTO signatures (petition_id, name, email, email_hash, country, ip_hash,
                                   created_at, confirmed_at, suspect_reason)
           VALUES ($1, 'Jose\u0301', $2, $3, $4, $5, $6::timestamptz,
                   CASE WHEN $7 THEN $6::timestamptz END, $8) RETURNING id""",
        petition_id,
        email,
        old_email_hash(email),
        country,
        HASHER.ip(ip) if ip else None,
        at + timedelta(minutes=minutes),
        confirmed,
        suspect,
    )
    return signature_id


async def new_petition(pool: asyncpg.Pool, slug: str) -> int:
    petition_id: int = await pool.fetchval(
        "INSERT INTO petitions (slug, title, status, require_confirmation)"
        " VALUES ($1, 'T', 'open', false) RETURNING id",
        slug,
    )
    return petition_id


async def test_countersign_migrate_rehashes_merges_and_the_counts_stay_exact(
    url_before_006: str,
    before_006: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    servers: Servers,
    tmp_path: Path,
) -> None:
    pool = before_006
    first = await new_petition(pool, "first")
    other = await new_petition(pool, "other")
    kept = {
        "dup": await insert_old(pool, first, "dup@example.org", ip="203.0.113.5"),
        "idn": await insert_old(pool, first, "idn@b\u00fccher.example", country="SY"),
        "jose": await insert_old(pool, first, "jos\u00e9@example.org", country="LB"),
        "solo": await insert_old(pool, first, "solo@example.org", ip="203.0.113.5", at=LONG_AGO),
        "other": await insert_old(pool, other, "dup@example.org"),
    }
    merged_away = [
        await insert_old(pool, first, "dup@\uff45xample.org", country="BV", minutes=1),
        await insert_old(pool, first, "dup@examp\u00adle.org", minutes=2, ip="203.0.113.5"),
        # The one that counts stays, even though this one came first.
        await insert_old(
            pool, first, "idn@xn--bcher-kva.example", minutes=-5, suspect="rate_limit_address"
        ),
        await insert_old(pool, first, "jose\u0301@example.org", country="LB", confirmed=False),
    ]
    same_day_long_ago = await insert_old(
        pool, first, "again@example.org", ip="203.0.113.5", at=LONG_AGO, minutes=3
    )
    await pool.execute(
        """INSERT INTO signatures (petition_id, country, erased_at)
           VALUES ($1, 'FR', now())""",
        first,
    )
    worker = CounterWorker("", pool, redis, layout, QUICK_WORKER)
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, first)).total == 7

    # Without the secret key the migration refuses: only the command can re-hash.
    env = {"DATABASE_URL": url_before_006, "REDIS_URL": servers.redis}
    result = countersign("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "run `countersign migrate` with COUNTERSIGN_SECRET_KEY set" in result.stderr
    assert await pool.fetchval("SELECT to_regclass('ip_hash_keys')") is None

    result = countersign(
        "migrate", env={**env, "COUNTERSIGN_SECRET_KEY": TEST_SECRET}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert MIGRATION in result.stdout

    rows = {row["id"]: row for row in await pool.fetch("SELECT * FROM signatures")}
    assert not set(merged_away) & set(rows)
    assert set(kept.values()) <= set(rows)
    for name in ("dup", "idn", "jose", "solo", "other"):
        assert rows[kept[name]]["email_hash"] == HASHER.email(rows[kept[name]]["email"]), name
    assert rows[kept["jose"]]["name"] == unicodedata.normalize("NFC", "Jose\u0301")
    await worker.drain()
    first_tally = await assert_converges(pool, redis, layout, first)
    assert first_tally.total == 7 - 2  # the suspect and the pending one never counted
    counted_by_country = {code: n for code, n in first_tally.countries.items() if n}
    assert counted_by_country == {"FR": 3, "SY": 1, "LB": 1}  # BV was a second spelling
    assert (await assert_converges(pool, redis, layout, other)).total == 1
    [entry] = await pool.fetch("SELECT * FROM audit_log WHERE action = 'signatures.rehash'")
    assert entry["row_count"] == 4
    # Erasing a spelling that was merged away erases the address everywhere.
    erased = await erase_address(pool, HASHER, "dup@examp\u00adle.org", actor="test")
    assert (erased.signatures, erased.petitions) == (2, 2)

    # Today's stored IP hashes are today's: they group with the signatures to come.
    today = await DailyIpKeys(pool, HASHER).today()
    assert rows[kept["dup"]]["ip_hash"] == today.ip("203.0.113.5")
    # Earlier days' were sealed with keys never stored: the secret key tells nothing any
    # more, though a day's signatures from one address still group together.
    old = rows[kept["solo"]]["ip_hash"]
    assert old == rows[same_day_long_ago]["ip_hash"]
    assert old != HASHER.ip("203.0.113.5")
    for (key,) in await pool.fetch("SELECT key FROM ip_hash_keys"):
        assert old != hmac.digest(key, HASHER.ip("203.0.113.5"), hashlib.sha256)


async def test_the_migration_applies_alone_to_a_database_with_nothing_to_rewrite(
    before_006: asyncpg.Pool,
) -> None:
    await new_petition(before_006, "first")
    async with before_006.acquire() as conn:
        assert MIGRATION in await migrate(conn)


async def test_old_ip_hashes_in_invalidation_criteria_and_the_audit_go(
    before_006: asyncpg.Pool,
) -> None:
    pool = before_006
    first = await new_petition(pool, "first")
    old_hash = HASHER.ip("203.0.113.5").hex()
    await pool.execute(
        """INSERT INTO invalidations (petition_id, criteria, reason, created_by)
           VALUES ($1, jsonb_build_object('ip_hash', $2::text), 'bots', 'admin')""",
        first,
        old_hash,
    )
    await pool.execute(
        """INSERT INTO audit_log (actor, action, details)
           VALUES ('admin', 'invalidation.apply',
                   jsonb_build_object('criteria', jsonb_build_object('ip_hash', $1::text)))""",
        old_hash,
    )
    async with pool.acquire() as conn:
        await migrate(conn)
    dump = str([dict(r) for r in await pool.fetch("SELECT * FROM invalidations")])
    dump += str([dict(r) for r in await pool.fetch("SELECT * FROM audit_log")])
    assert old_hash not in dump
    assert "removed by migration 006" in dump


async def test_without_its_data_step_the_migration_refuses_existing_rows(
    before_006: asyncpg.Pool,
) -> None:
    await insert_old(before_006, await new_petition(before_006, "first"), "a@example.org")
    async with before_006.acquire() as conn:
        with pytest.raises(MigrationError, match="countersign migrate"):
            await migrate(conn)
        assert MIGRATION not in {
            row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")
        }
