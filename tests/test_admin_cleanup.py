"""Erasure, invalidation (with undo), retention, and the audit log they leave.

Counts must drop (or come back) through the normal path: rows change in Postgres, the
worker carries the change to Redis, and Redis equals a GROUP BY over Postgres.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from tests.support.counts import Tally, assert_converges
from tests.support.factories import SLUG, StaffTokens, hasher, insert_signature
from tests.support.http import ADMIN, Client, bearer, error_of
from tests.support.processes import countersign

ERASURES = f"{ADMIN}/erasures"
INVALIDATIONS = f"{ADMIN}/petitions/{SLUG}/invalidations"
SUMMARY = f"{ADMIN}/petitions/{SLUG}/summary"
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def summary_of(client: Client, token: str, slug: str = SLUG) -> dict[str, Any]:
    response = await client.get(f"{ADMIN}/petitions/{slug}/summary", headers=bearer(token))
    body: dict[str, Any] = await response.json()
    return body


async def live(
    worker: CounterWorker, pool: asyncpg.Pool, redis: Redis, layout: KeyLayout, petition_id: int
) -> Tally:
    """Drain the worker, check Redis equals Postgres, and return the counts."""
    await worker.drain()
    return await assert_converges(pool, redis, layout, petition_id, timeout=5)


async def audit_entries(pool: asyncpg.Pool, action_prefix: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT actor, action, petition_id, details::text, row_count FROM audit_log
           WHERE action LIKE $1 || '%' ORDER BY id""",
        action_prefix,
    )
    return [{**dict(row), "details": json.loads(row["details"])} for row in rows]


# -- erasure ------------------------------------------------------------------------------------


async def test_erasure_removes_every_signature_of_the_address_and_counts_drop(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    other = await pool.fetchval(
        "INSERT INTO petitions (slug, title, status, require_confirmation)"
        " VALUES ('other', 'Other', 'open', false) RETURNING id"
    )
    signatures = [
        (SLUG, "Amal.Haddad@example.org", "SY"),
        ("other", "amal.haddad+icc@Example.org", "SY"),  # the same mailbox
        (SLUG, "lina@example.org", "LB"),
        ("other", "lina@example.org", "LB"),
    ]
    for slug, email, country in signatures:
        response = await client.post(
            f"/v1/petitions/{slug}/signatures",
            json={"name": "Someone", "email": email, "country": country, "postal_code": "1000"},
        )
        assert response.status == 201
    before = {p: await live(worker, pool, redis, layout, p) for p in (petition_id, other)}
    assert [before[p].total for p in (petition_id, other)] == [2, 2]

    response = await client.post(
        ERASURES, json={"email": " AMAL.HADDAD@example.org"}, headers=bearer(staff.admin)
    )
    assert response.status == 200
    text = await response.text()
    assert json.loads(text) == {"erased": 2, "petitions": 2}
    assert "amal" not in text.lower()

    erased = await pool.fetch("SELECT * FROM signatures WHERE erased_at IS NOT NULL")
    assert len(erased) == 2
    for row in erased:
        assert [row[c] for c in ("name", "email", "email_hash", "postal_code", "ip_hash")] == [
            None
        ] * 5
        assert (row["country"], row["counted"]) == ("SY", False)
    assert await pool.fetchval("SELECT count(*) FROM signatures WHERE erased_at IS NULL") == 2

    after = {p: await live(worker, pool, redis, layout, p) for p in (petition_id, other)}
    for p in (petition_id, other):
        assert after[p].total == before[p].total - 1
        assert after[p].countries == {"LB": 1}
    summary = await summary_of(client, staff.exporter)
    assert (summary["total"], summary["erased"]) == (1, 1)

    [entry] = await audit_entries(pool, "erasure")
    assert entry == {
        "actor": "admin-test",
        "action": "erasure",
        "petition_id": None,
        "details": {"petitions": 2},
        "row_count": 2,
    }
    logged = await pool.fetchval("SELECT string_agg(details::text, ' ') FROM audit_log")
    assert "amal" not in logged.lower()

    # Asked again: nothing left to find.
    again = await client.post(
        ERASURES, json={"email": "amal.haddad@example.org"}, headers=bearer(staff.admin)
    )
    assert await again.json() == {"erased": 0, "petitions": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "email"), ({"email": "not-an-address"}, "email"), ({"email": "a@b.org", "x": 1}, "x")],
)
async def test_erasure_needs_one_valid_address(
    client: Client, staff: StaffTokens, body: dict[str, Any], field: str
) -> None:
    response = await client.post(ERASURES, json=body, headers=bearer(staff.admin))
    error = await error_of(response, 422)
    assert set(error["fields"]) == {field}
    assert "not-an-address" not in await response.text()


async def test_exporters_cannot_erase(client: Client, staff: StaffTokens) -> None:
    response = await client.post(
        ERASURES, json={"email": "a@example.org"}, headers=bearer(staff.exporter)
    )
    assert (await error_of(response, 403))["code"] == "insufficient_role"


# -- invalidation -------------------------------------------------------------------------------


async def seed_fraud(pool: asyncpg.Pool, petition_id: int) -> None:
    """30 signatures: a burst from one address with a throwaway domain and source, and
    ordinary ones spread over the day."""
    for i in range(10):
        await insert_signature(
            pool,
            hasher,
            petition_id,
            email=f"bot{i}@mailinator.com",
            country="US",
            source="clickfarm",
            ip="203.0.113.7",
            created_at=START + timedelta(minutes=i),
        )
    for i in range(20):
        await insert_signature(
            pool,
            hasher,
            petition_id,
            email=f"person{i}@{'example.org' if i % 2 else 'Mailinator.com'}",
            country=("SY", "FR")[i % 2],
            source=(None, "partner-a")[i % 2],
            ip=f"198.51.100.{i}",
            created_at=START + timedelta(hours=i),
        )


@pytest.mark.parametrize(
    ("criteria", "hits"),
    [
        ({"source": "clickfarm"}, 10),
        ({"ip_hash": hasher.ip("203.0.113.7").hex()}, 10),
        ({"ip_hash": hasher.ip("203.0.113.7").hex().upper()}, 10),
        ({"email_domain": "mailinator.com"}, 20),
        ({"email_domain": "@MAILINATOR.COM"}, 20),
        (
            {
                "signed_after": START.isoformat(),
                "signed_before": (START + timedelta(minutes=30)).isoformat(),
            },
            11,
        ),
        ({"signed_after": (START + timedelta(hours=15)).isoformat()}, 5),
        ({"email_domain": "mailinator.com", "source": "clickfarm"}, 10),
        ({"source": "nobody"}, 0),
    ],
)
async def test_dry_run_counts_and_changes_nothing(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    petition_id: int,
    criteria: dict[str, str],
    hits: int,
) -> None:
    await seed_fraud(pool, petition_id)
    response = await client.post(
        INVALIDATIONS, json={**criteria, "dry_run": True}, headers=bearer(staff.admin)
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {"would_invalidate": hits}
    assert await pool.fetchval("SELECT count(*) FROM signatures WHERE NOT counted") == 0
    assert await pool.fetchval("SELECT count(*) FROM invalidations") == 0
    [entry] = await audit_entries(pool, "invalidation")
    assert (entry["action"], entry["row_count"]) == ("invalidation.dry_run", hits)


async def test_invalidate_then_undo(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await seed_fraud(pool, petition_id)
    before = await live(worker, pool, redis, layout, petition_id)
    assert before.total == 30
    headers = bearer(staff.admin)

    response = await client.post(
        INVALIDATIONS, json={"source": "clickfarm", "reason": "click farm"}, headers=headers
    )
    assert response.status == 201, await response.text()
    first = await response.json()
    assert first["invalidated"] == 10
    assert first["criteria"] == {"source": "clickfarm"}
    assert (first["reason"], first["created_by"], first["undone_at"]) == (
        "click farm",
        "admin-test",
        None,
    )
    marked = await pool.fetch(
        "SELECT invalid_reason, invalidation_id, counted FROM signatures WHERE source = 'clickfarm'"
    )
    assert {tuple(row) for row in marked} == {("click farm", first["id"], False)}
    after_first = await live(worker, pool, redis, layout, petition_id)
    assert after_first.total == 20
    assert after_first.sources.get("clickfarm") is None
    assert (await summary_of(client, staff.exporter))["invalidated"] == 10

    # A second one overlapping the first takes only rows not invalidated yet.
    second = await (
        await client.post(
            INVALIDATIONS,
            json={"email_domain": "mailinator.com", "reason": "disposable addresses"},
            headers=headers,
        )
    ).json()
    assert second["invalidated"] == 10
    assert (await live(worker, pool, redis, layout, petition_id)).total == 10

    listed = await (await client.get(INVALIDATIONS, headers=headers)).json()
    assert [i["id"] for i in listed["invalidations"]] == [second["id"], first["id"]]

    undo = await client.delete(f"{ADMIN}/invalidations/{first['id']}", headers=headers)
    assert undo.status == 200
    undone = await undo.json()
    assert (undone["restored"], undone["undone_by"]) == (10, "admin-test")
    assert undone["undone_at"] is not None
    # Exactly the first one's rows came back; the second's stay out.
    after_undo = await live(worker, pool, redis, layout, petition_id)
    assert after_undo.total == 20
    assert after_undo.sources["clickfarm"] == 10
    still_out = await pool.fetchval(
        "SELECT count(*) FROM signatures WHERE invalidation_id = $1 AND NOT counted", second["id"]
    )
    assert still_out == 10
    summary = await summary_of(client, staff.exporter)
    assert (summary["total"], summary["invalidated"]) == (20, 10)

    again = await client.delete(f"{ADMIN}/invalidations/{first['id']}", headers=headers)
    assert (await error_of(again, 409))["code"] == "invalidation_undone"
    for missing in ("999", "abc"):
        response = await client.delete(f"{ADMIN}/invalidations/{missing}", headers=headers)
        assert (await error_of(response, 404))["code"] == "invalidation_not_found"

    entries = await audit_entries(pool, "invalidation")
    assert [(e["action"], e["row_count"]) for e in entries] == [
        ("invalidation.apply", 10),
        ("invalidation.apply", 10),
        ("invalidation.undo", 10),
    ]
    assert entries[0]["details"] == {
        "invalidation": first["id"],
        "criteria": {"source": "clickfarm"},
    }


async def test_an_undone_row_erased_meanwhile_stays_uncounted(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    await seed_fraud(pool, petition_id)
    headers = bearer(staff.admin)
    applied = await (
        await client.post(
            INVALIDATIONS, json={"source": "clickfarm", "reason": "farm"}, headers=headers
        )
    ).json()
    await client.post(ERASURES, json={"email": "bot0@mailinator.com"}, headers=headers)
    await client.delete(f"{ADMIN}/invalidations/{applied['id']}", headers=headers)
    # Each reason not to count is its own column: undoing one leaves the erasure.
    assert (await live(worker, pool, redis, layout, petition_id)).total == 29


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "nothing chosen"}, "_schema"),
        ({"source": "clickfarm"}, "reason"),
        ({"source": "clickfarm", "reason": ""}, "reason"),
        ({"ip_hash": "abc", "dry_run": True}, "ip_hash"),
        ({"email_domain": "not a domain", "dry_run": True}, "email_domain"),
        ({"signed_after": "soon", "dry_run": True}, "signed_after"),
        ({"source": "Click Farm", "dry_run": True}, "source"),
        ({"source": "x", "dry_run": True, "country": "US"}, "country"),
    ],
)
async def test_invalidation_input_is_checked(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(INVALIDATIONS, json=body, headers=bearer(staff.admin))
    error = await error_of(response, 422)
    assert set(error["fields"]) == {field}
    assert await pool.fetchval("SELECT count(*) FROM invalidations") == 0


async def test_repeated_ip_hashes_lead_to_an_invalidation(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool, petition_id: int
) -> None:
    await seed_fraud(pool, petition_id)
    headers = bearer(staff.admin)
    response = await client.get(f"{ADMIN}/petitions/{SLUG}/ip-hashes", headers=headers)
    [found] = (await response.json())["ip_hashes"]
    assert found["ip_hash"] == hasher.ip("203.0.113.7").hex()
    assert (found["signatures"], found["counted"]) == (10, 10)
    dry = await client.post(
        INVALIDATIONS, json={"ip_hash": found["ip_hash"], "dry_run": True}, headers=headers
    )
    assert await dry.json() == {"would_invalidate": 10}
    [entry] = await audit_entries(pool, "search")
    assert (entry["action"], entry["row_count"]) == ("search.ip_hashes", 10)
    exporter = await client.get(
        f"{ADMIN}/petitions/{SLUG}/ip-hashes", headers=bearer(staff.exporter)
    )
    assert exporter.status == 403


# -- retention ---------------------------------------------------------------------------------


async def test_anonymise_keeps_every_count(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
    worker_env: dict[str, str],
    petition_id: int,
) -> None:
    recent = await pool.fetchval(
        "INSERT INTO petitions (slug, title, status) VALUES ('recent', 'R', 'open') RETURNING id"
    )
    await seed_fraud(pool, petition_id)
    for i in range(5):
        await insert_signature(pool, hasher, recent, email=f"r{i}@example.org", postal_code="75001")
    await pool.execute(
        "UPDATE signatures SET postal_code = '1000' WHERE petition_id = $1", petition_id
    )
    await pool.execute("UPDATE petitions SET status = 'closed'")
    await pool.execute(
        "UPDATE petitions SET closed_at = now() - interval '40 days' WHERE id = $1", petition_id
    )
    await pool.execute(
        "UPDATE petitions SET closed_at = now() - interval '5 days' WHERE id = $1", recent
    )
    kept = "SELECT id, country, source, created_at, counted FROM signatures ORDER BY id"
    before_rows = await pool.fetch(kept)
    before = {p: await live(worker, pool, redis, layout, p) for p in (petition_id, recent)}
    summaries = {slug: await summary_of(client, staff.admin, slug) for slug in (SLUG, "recent")}

    result = countersign("anonymise", "--closed-for", "30", env=worker_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"anonymised 30 signature(s) of {SLUG}"

    rows = await pool.fetch("SELECT * FROM signatures WHERE petition_id = $1", petition_id)
    for row in rows:
        personal = ("name", "email", "email_hash", "postal_code", "ip_hash")
        assert [row[c] for c in personal] == [None] * 5
        assert row["anonymised_at"] is not None
    untouched = await pool.fetch("SELECT * FROM signatures WHERE petition_id = $1", recent)
    assert all(row["email"] and row["postal_code"] == "75001" for row in untouched)
    assert await pool.fetch(kept) == before_rows  # country, source, time: all still there

    for p in (petition_id, recent):
        assert await live(worker, pool, redis, layout, p) == before[p]
    for slug, summary in summaries.items():
        now = await summary_of(client, staff.admin, slug)
        assert {k: v for k, v in now.items() if k != "generated_at"} == {
            k: v for k, v in summary.items() if k != "generated_at"
        }

    [entry] = await audit_entries(pool, "anonymise")
    assert (entry["petition_id"], entry["row_count"]) == (petition_id, 30)
    assert entry["details"] == {"closed_for_days": 30}
    assert entry["actor"].startswith("cli")

    again = countersign("anonymise", "--closed-for", "30", env=worker_env)
    assert again.stdout.strip() == f"anonymised 0 signature(s) of {SLUG}"
    none = countersign("anonymise", "--closed-for", "365", env=worker_env)
    assert none.stdout.strip() == "no petition has been closed for 365 days or more"
    assert countersign("anonymise", "--closed-for", "0", env=worker_env).returncode == 2


# -- the audit command -------------------------------------------------------------------------


async def test_audit_command_prints_the_log_newest_first(
    client: Client, staff: StaffTokens, worker_env: dict[str, str], petition_id: int
) -> None:
    empty = countersign("audit", env=worker_env)
    assert empty.stdout.strip() == "the audit log is empty"
    headers = bearer(staff.admin)
    await client.post(INVALIDATIONS, json={"source": "x", "dry_run": True}, headers=headers)
    await client.post(ERASURES, json={"email": "secret.person@example.org"}, headers=headers)

    result = countersign("audit", env=worker_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["at", "who", "action", "petition", "rows", "details"]
    assert [line.split()[2:6] for line in lines[1:]] == [
        ["admin-test", "erasure", "-", "0"],
        ["admin-test", "invalidation.dry_run", SLUG, "0"],
    ]
    assert "secret" not in result.stdout
    limited = countersign("audit", "--limit", "1", env=worker_env)
    assert len(limited.stdout.splitlines()) == 2
