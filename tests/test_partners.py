"""Partners: keys shown once and stored hashed, server-to-server signing on the petitions
granted them (limited per key, not per server), their counts, and the ``countersign
partner`` commands. That their figures cannot tell whether an address had signed is
tests/test_partner_figures.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import UTC, datetime

import asyncpg
import pytest

from counter_worker.worker import CounterWorker
from countersign_core.settings import Rate, Settings
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.partners import KEY_PREFIX, create_partner, grant_petition
from petition_api.app import create_app
from petition_api.client_address import SIGNER_IP_HEADER
from tests.support.factories import SLUG, StaffTokens, hasher, signature_rows, signer
from tests.support.http import ADMIN, SIGN, AiohttpClient, Client, bearer, error_of
from tests.support.processes import countersign
from tests.support.waiting import eventually

PARTNER_COUNTS = f"/v1/partner/counts?petition={SLUG}"


@pytest.fixture
async def partner_key(pool: asyncpg.Pool, petition_id: int) -> str:
    """A partner granted the usual petition."""
    _, key = await create_partner(
        pool, actor="test", name="The Daily Example", source_code="daily-example", origins=[]
    )
    await grant_petition(pool, actor="tests", source_code="daily-example", slug=SLUG)
    return key


async def test_a_key_is_random_and_stored_only_as_its_sha256(
    pool: asyncpg.Pool, partner_key: str
) -> None:
    assert re.fullmatch(KEY_PREFIX + r"[A-Za-z0-9_-]{43}", partner_key)
    _, other = await create_partner(
        pool, actor="test", name="Other", source_code="other", origins=[]
    )
    assert other != partner_key
    stored = await pool.fetchval(
        "SELECT key_hash FROM partners WHERE source_code = 'daily-example'"
    )
    assert stored == hashlib.sha256(partner_key.encode()).digest()
    dump = str([dict(row) for row in await pool.fetch("SELECT * FROM partners")])
    assert partner_key not in dump
    assert partner_key[len(KEY_PREFIX) :] not in dump


@pytest.mark.parametrize("body_source", [None, "someone-else", "Not A Valid Code"])
async def test_a_partner_signature_carries_the_partner_code_whatever_the_body_says(
    client: Client, pool: asyncpg.Pool, partner_key: str, body_source: str | None
) -> None:
    body = signer() if body_source is None else signer(source=body_source)
    response = await client.post(SIGN, json=body, headers=bearer(partner_key))
    assert response.status == 201, await response.text()
    [row] = await signature_rows(pool)
    assert row["source"] == "daily-example"


async def test_without_a_key_the_body_source_is_kept(client: Client, pool: asyncpg.Pool) -> None:
    assert (await client.post(SIGN, json=signer(source="newsletter"))).status == 201
    [row] = await signature_rows(pool)
    assert row["source"] == "newsletter"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer cs_partner_wrong",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "cs_partner_no_scheme",
    ],
)
async def test_a_wrong_or_malformed_key_is_401_and_nothing_is_stored(
    client: Client, pool: asyncpg.Pool, partner_key: str, authorization: str
) -> None:
    response = await client.post(SIGN, json=signer(), headers={"Authorization": authorization})
    error = await error_of(response, 401)
    assert error["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert partner_key not in await response.text()
    assert await signature_rows(pool) == []


async def test_a_revoked_key_is_401_within_seconds(
    client: Client, pool: asyncpg.Pool, partner_key: str
) -> None:
    assert (await client.post(SIGN, json=signer(), headers=bearer(partner_key))).status == 201
    await pool.execute("UPDATE partners SET revoked_at = now()")

    async def refused() -> bool:
        response = await client.post(
            SIGN, json=signer(email="next@example.org"), headers=bearer(partner_key)
        )
        return response.status == 401

    await eventually(refused, timeout=10)
    stored = len(await signature_rows(pool))
    response = await client.post(
        SIGN, json=signer(email="after@example.org"), headers=bearer(partner_key)
    )
    await error_of(response, 401)
    assert len(await signature_rows(pool)) == stored


async def test_partner_counts_report_the_partner_source_only(
    client: Client, worker: CounterWorker, partner_key: str
) -> None:
    for i in range(3):
        response = await client.post(
            SIGN, json=signer(email=f"p{i}@example.org"), headers=bearer(partner_key)
        )
        assert response.status == 201
    for i in range(2):
        assert (await client.post(SIGN, json=signer(email=f"o{i}@example.org"))).status == 201
    await worker.drain()

    response = await client.get(PARTNER_COUNTS, headers=bearer(partner_key))
    assert response.status == 200
    assert await response.json() == {"petition": SLUG, "source": "daily-example", "total": 3}
    assert response.headers["Cache-Control"] == "no-store"


async def test_partner_counts_are_zero_before_any_signature(
    client: Client, worker: CounterWorker, partner_key: str
) -> None:
    await worker.drain()
    response = await client.get(PARTNER_COUNTS, headers=bearer(partner_key))
    assert (await response.json())["total"] == 0


async def test_partner_counts_errors(
    client: Client, pool: asyncpg.Pool, partner_key: str, worker: CounterWorker
) -> None:
    assert (await error_of(await client.get(PARTNER_COUNTS), 401))["code"] == "unauthorized"
    wrong = await client.get(PARTNER_COUNTS, headers=bearer("cs_partner_nope"))
    await error_of(wrong, 401)
    missing = await client.get("/v1/partner/counts", headers=bearer(partner_key))
    assert (await error_of(missing, 422))["fields"] == {
        "petition": ["Missing data for required field."]
    }
    unknown = await client.get("/v1/partner/counts?petition=nope", headers=bearer(partner_key))
    assert (await error_of(unknown, 404))["code"] == "petition_not_found"
    await pool.execute("INSERT INTO petitions (slug, title) VALUES ('a-draft', 'Draft')")
    draft = await client.get("/v1/partner/counts?petition=a-draft", headers=bearer(partner_key))
    await error_of(draft, 404)


async def test_partner_validations_count_confirmed_and_pending_only(
    client: Client, pool: asyncpg.Pool, partner_key: str, confirming_petition_id: int
) -> None:
    await grant_petition(
        pool, actor="tests", source_code="daily-example", slug="free-the-detainees"
    )
    path = "/v1/petitions/free-the-detainees/signatures"
    for i in range(4):
        response = await client.post(
            path, json=signer(email=f"p{i}@example.org"), headers=bearer(partner_key)
        )
        assert response.status == 202
    assert (await client.post(path, json=signer(email="other@example.org"))).status == 202
    # Two of the partner's signers confirm its emails; staff invalidate one of them.
    for email in ("p0@example.org", "p3@example.org"):
        await pool.execute(
            """WITH s AS (UPDATE signatures SET confirmed_at = now() WHERE email = $1
                          RETURNING id)
               UPDATE partner_submissions SET confirmed_at = now()
               WHERE signature_id = (SELECT id FROM s)""",
            email,
        )
    await pool.execute(
        "UPDATE signatures SET invalidated_at = now(), invalid_reason = 'test'"
        " WHERE email = 'p3@example.org'"
    )

    validations = "/v1/partner/validations?petition=free-the-detainees"
    response = await client.get(validations, headers=bearer(partner_key))
    assert response.status == 200
    assert await response.json() == {
        "petition": "free-the-detainees",
        "source": "daily-example",
        "confirmed": 1,
        "pending": 2,
    }
    counts = "/v1/partner/counts?petition=free-the-detainees"
    assert (await (await client.get(counts, headers=bearer(partner_key))).json())["total"] == 1
    assert response.headers["Cache-Control"] == "no-store"
    assert (await error_of(await client.get(validations), 401))["code"] == "unauthorized"
    unknown = await client.get("/v1/partner/validations?petition=nope", headers=bearer(partner_key))
    assert (await error_of(unknown, 404))["code"] == "petition_not_found"


# -- the commands ---------------------------------------------------------------------------


async def test_partner_create_prints_only_the_key_and_stores_its_hash(
    worker_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    created = countersign(
        "partner",
        "create",
        "The Daily Example",
        "--source",
        "daily-example",
        "--origin",
        "https://Daily.Example/",
        "--origin",
        "http://localhost:8081",
        env=worker_env,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"
    assert key.startswith(KEY_PREFIX)
    assert "shown only this once" in created.stderr
    row = await pool.fetchrow("SELECT * FROM partners")
    assert row["name"] == "The Daily Example"
    assert row["allowed_origins"] == ["http://localhost:8081", "https://daily.example"]
    assert row["key_hash"] == hashlib.sha256(key.encode()).digest()
    assert row["revoked_at"] is None

    listed = countersign("partner", "list", env=worker_env)
    assert listed.returncode == 0, listed.stderr
    assert "daily-example\tThe Daily Example\tactive" in listed.stdout
    assert "https://daily.example" in listed.stdout
    assert key not in listed.stdout
    assert KEY_PREFIX not in listed.stdout

    revoked = countersign("partner", "revoke", "daily-example", env=worker_env)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == "partner daily-example is revoked"
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM partners")
    assert (
        "daily-example\tThe Daily Example\trevoked"
        in countersign("partner", "list", env=worker_env).stdout
    )

    again = countersign("partner", "revoke", "daily-example", env=worker_env)
    assert again.returncode == 2
    assert "no active partner" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Name", "--source", "Bad Code"], "a-z, 0-9"),
        (["Name", "--source", "ok", "--origin", "daily.example"], "not a web origin"),
        (["Name", "--source", "ok", "--origin", "https://x.example/path"], "not a web origin"),
        (["Name", "--source", "ok", "--origin", "*"], "not a web origin"),
        (["", "--source", "ok"], "the name must be 1-200 characters"),
    ],
)
def test_partner_create_refuses_bad_input(
    worker_env: dict[str, str], args: list[str], message: str
) -> None:
    result = countersign("partner", "create", *args, env=worker_env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_a_source_code_is_taken_once(worker_env: dict[str, str]) -> None:
    assert countersign("partner", "create", "A", "--source", "same", env=worker_env).returncode == 0
    again = countersign("partner", "create", "B", "--source", "same", env=worker_env)
    assert again.returncode == 2
    assert "exists already" in again.stderr
    assert again.stdout == ""


def test_partner_list_when_empty(worker_env: dict[str, str]) -> None:
    assert countersign("partner", "list", env=worker_env).stdout.strip() == "no partners"


async def test_petition_origins_command(
    worker_env: dict[str, str], pool: asyncpg.Pool, petition_id: int
) -> None:
    result = countersign(
        "petition", "origins", SLUG, "https://b.example", "https://A.example:443", env=worker_env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"petition {SLUG} allows: https://a.example https://b.example"
    stored = await pool.fetchval("SELECT allowed_origins FROM petitions WHERE id = $1", petition_id)
    assert stored == ["https://a.example", "https://b.example"]

    assert countersign("petition", "origins", SLUG, "*", env=worker_env).returncode == 0
    assert await pool.fetchval("SELECT allowed_origins FROM petitions") == ["*"]
    cleared = countersign("petition", "origins", SLUG, env=worker_env)
    assert cleared.stdout.strip() == f"petition {SLUG} allows: no origin of its own"
    assert await pool.fetchval("SELECT allowed_origins FROM petitions") == []

    assert countersign("petition", "origins", "nope", env=worker_env).returncode == 1
    bad = countersign("petition", "origins", SLUG, "ftp://x.example", env=worker_env)
    assert bad.returncode == 2
    assert "not a web origin" in bad.stderr


# -- grants: a partner works on the petitions granted it ------------------------------------


async def test_a_key_signs_and_reads_only_the_petitions_granted_it(
    client: Client, pool: asyncpg.Pool, partner_key: str, confirming_petition_id: int
) -> None:
    # free-the-detainees is not granted to the partner.
    other = "/v1/petitions/free-the-detainees/signatures"
    refused = await client.post(other, json=signer(), headers=bearer(partner_key))
    assert (await error_of(refused, 403))["code"] == "petition_not_granted"
    assert await signature_rows(pool) == []
    for figures in ("counts", "validations"):
        response = await client.get(
            f"/v1/partner/{figures}?petition=free-the-detainees", headers=bearer(partner_key)
        )
        assert (await error_of(response, 403))["code"] == "petition_not_granted"
    # Anyone may still sign there without a key.
    assert (await client.post(other, json=signer())).status == 202

    await grant_petition(
        pool, actor="tests", source_code="daily-example", slug="free-the-detainees"
    )

    async def signs() -> bool:
        response = await client.post(
            other, json=signer(email="granted@example.org"), headers=bearer(partner_key)
        )
        return response.status == 202

    await eventually(signs, timeout=10)


async def test_grant_commands_are_audited_and_refuse_what_does_not_exist(
    worker_env: dict[str, str], pool: asyncpg.Pool, petition_id: int
) -> None:
    created = countersign("partner", "create", "D", "--source", "daily", env=worker_env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    granted = countersign("partner", "grant", "daily", SLUG, env=worker_env)
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.strip() == f"partner daily is granted petition {SLUG}"
    assert await pool.fetchval("SELECT count(*) FROM partner_grants") == 1
    # Again: nothing changes.
    assert countersign("partner", "grant", "daily", SLUG, env=worker_env).returncode == 0
    assert await pool.fetchval("SELECT count(*) FROM partner_grants") == 1
    assert (
        countersign("partner", "create", "W", "--source", "weekly", env=worker_env).returncode == 0
    )
    listed = countersign("partner", "list", "--petition", SLUG, env=worker_env)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()  # the weekly partner has no grant
    assert line.split("\t")[:4] == ["daily", "D", "active", f"granted {datetime.now(UTC):%Y-%m-%d}"]

    revoked = countersign("partner", "revoke-grant", "daily", SLUG, env=worker_env)
    assert revoked.returncode == 0, revoked.stderr
    assert await pool.fetchval("SELECT count(*) FROM partner_grants") == 0
    none = countersign("partner", "list", "--petition", SLUG, env=worker_env)
    assert none.stdout == "no partners\n"
    again = countersign("partner", "revoke-grant", "daily", SLUG, env=worker_env)
    assert again.returncode == 1
    assert "(grant_not_found)" in again.stderr
    unknown = countersign("partner", "grant", "nobody", SLUG, env=worker_env)
    assert unknown.returncode == 1
    assert "(partner_not_found)" in unknown.stderr
    nowhere = countersign("partner", "grant", "daily", "no-such-petition", env=worker_env)
    assert nowhere.returncode == 1
    assert "(petition_not_found)" in nowhere.stderr

    assert countersign("partner", "revoke", "daily", env=worker_env).returncode == 0
    twice = countersign("partner", "revoke", "daily", env=worker_env)
    assert twice.returncode != 0
    assert "no active partner with source code 'daily'" in twice.stderr

    # Creating and revoking a partner are on record too (by its code, never its key);
    # a revocation that found nothing to revoke is not.
    entries = await pool.fetch("SELECT actor, action, details FROM audit_log ORDER BY id")
    assert [(e["action"], json.loads(e["details"])) for e in entries] == [
        ("partner.create", {"partner": "daily"}),
        ("partner.grant", {"partner": "daily"}),
        ("partner.grant", {"partner": "daily"}),
        ("partner.create", {"partner": "weekly"}),
        ("partner.revoke_grant", {"partner": "daily"}),
        ("partner.revoke", {"partner": "daily"}),
    ]
    assert all(e["actor"].startswith("cli:") for e in entries)
    assert key.startswith(KEY_PREFIX)
    assert key not in str([dict(e) for e in entries])


async def test_staff_grant_list_and_revoke_through_the_api(
    client: Client, pool: asyncpg.Pool, staff: StaffTokens
) -> None:
    _, _key = await create_partner(
        pool, actor="test", name="Daily", source_code="daily", origins=["https://daily.example"]
    )
    grants = f"{ADMIN}/petitions/{SLUG}/partners"
    granted = await client.put(f"{grants}/daily", headers=bearer(staff.admin))
    assert granted.status == 200, await granted.text()
    body = await granted.json()
    assert (body["source"], body["name"], body["origins"], body["active"]) == (
        "daily",
        "Daily",
        ["https://daily.example"],
        True,
    )
    listed = await client.get(grants, headers=bearer(staff.exporter))
    assert [p["source"] for p in (await listed.json())["partners"]] == ["daily"]
    # An exporter reads, and changes nothing.
    refused = await client.delete(f"{grants}/daily", headers=bearer(staff.exporter))
    assert (await error_of(refused, 403))["code"] == "insufficient_role"

    assert (await client.delete(f"{grants}/daily", headers=bearer(staff.admin))).status == 204
    gone = await client.delete(f"{grants}/daily", headers=bearer(staff.admin))
    assert (await error_of(gone, 404))["code"] == "grant_not_found"
    unknown = await client.put(f"{grants}/nobody", headers=bearer(staff.admin))
    assert (await error_of(unknown, 404))["code"] == "partner_not_found"
    nowhere = await client.put(
        f"{ADMIN}/petitions/nope/partners/daily", headers=bearer(staff.admin)
    )
    assert (await error_of(nowhere, 404))["code"] == "petition_not_found"
    actions = await pool.fetch("SELECT actor, action FROM audit_log ORDER BY id")
    assert [(a["actor"], a["action"]) for a in actions] == [
        ("test", "partner.create"),
        ("admin-test", "partner.grant"),
        ("admin-test", "partner.revoke_grant"),
    ]


# -- limits: a partner's server signs for many people ---------------------------------------


@pytest.fixture
async def strict_client(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int
) -> Client:
    """The API with three signatures a minute per client address, loopback included."""
    limits = dataclasses.replace(settings.limits, allow=(), ip_burst=Rate(3, 60))
    return await aiohttp_client(create_app(dataclasses.replace(settings, limits=limits)))


async def test_a_partner_server_is_not_throttled_as_one_person(
    strict_client: Client, pool: asyncpg.Pool, partner_key: str
) -> None:
    client = strict_client
    for i in range(8):
        response = await client.post(
            SIGN, json=signer(email=f"relayed{i}@example.org"), headers=bearer(partner_key)
        )
        assert response.status == 201
    rows = await signature_rows(pool)
    assert [row["suspect_reason"] for row in rows] == [None] * 8
    # Without a signer's address, the partner's server address is not stored either.
    assert [row["ip_hash"] for row in rows] == [None] * 8
    # The same server without a key is one client like any other.
    for i in range(4):
        await client.post(SIGN, json=signer(email=f"direct{i}@example.org"))
    reasons = [row["suspect_reason"] for row in (await signature_rows(pool))[8:]]
    assert reasons == [None, None, None, "rate_limit_address"]


async def test_the_signer_address_a_partner_names_feeds_the_limits_and_the_ip_hash(
    strict_client: Client, pool: asyncpg.Pool, partner_key: str
) -> None:
    client = strict_client
    headers = {**bearer(partner_key), SIGNER_IP_HEADER: "203.0.113.7"}
    for i in range(4):
        response = await client.post(SIGN, json=signer(email=f"s{i}@example.org"), headers=headers)
        assert response.status == 201
    other = {**bearer(partner_key), SIGNER_IP_HEADER: "198.51.100.1"}
    assert (
        await client.post(SIGN, json=signer(email="t@example.org"), headers=other)
    ).status == 201
    rows = await signature_rows(pool)
    assert [row["suspect_reason"] for row in rows] == [
        None,
        None,
        None,
        "rate_limit_address",
        None,
    ]
    today = await DailyIpKeys(pool, hasher).today()
    assert {row["ip_hash"] for row in rows[:4]} == {today.ip("203.0.113.7")}
    assert rows[4]["ip_hash"] == today.ip("198.51.100.1")


async def test_the_signer_address_header_needs_a_key_and_an_address(
    strict_client: Client, pool: asyncpg.Pool, partner_key: str
) -> None:
    client = strict_client
    # Without a key anyone could name any address and walk past the limits: ignored.
    for i in range(4):
        response = await client.post(
            SIGN,
            json=signer(email=f"n{i}@example.org"),
            headers={SIGNER_IP_HEADER: f"192.0.2.{i}"},
        )
        assert response.status == 201
    rows = await signature_rows(pool)
    assert rows[-1]["suspect_reason"] == "rate_limit_address"
    today = await DailyIpKeys(pool, hasher).today()
    assert {row["ip_hash"] for row in rows} == {today.ip("127.0.0.1")}

    bad = await client.post(
        SIGN,
        json=signer(email="x@example.org"),
        headers={**bearer(partner_key), SIGNER_IP_HEADER: "not-an-address"},
    )
    error = await error_of(bad, 422)
    assert error["fields"] == {SIGNER_IP_HEADER: ["Not an IP address."]}
    assert len(await signature_rows(pool)) == 4


async def test_each_partner_key_has_its_own_limit(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, partner_key: str
) -> None:
    one_a_minute = dataclasses.replace(
        settings, limits=dataclasses.replace(settings.limits, partner=Rate(2, 60))
    )
    client = await aiohttp_client(create_app(one_a_minute))
    _, other_key = await create_partner(
        pool, actor="test", name="Other", source_code="other", origins=[]
    )
    await grant_petition(pool, actor="tests", source_code="other", slug=SLUG)
    for i, key in enumerate([partner_key] * 3 + [other_key] * 2):
        response = await client.post(
            SIGN, json=signer(email=f"k{i}@example.org"), headers=bearer(key)
        )
        assert response.status == 201
    assert [row["suspect_reason"] for row in await signature_rows(pool)] == [
        None,
        None,
        "rate_limit_partner",
        None,
        None,
    ]
