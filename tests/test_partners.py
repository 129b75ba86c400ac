"""Partners: keys shown once and stored hashed, server-to-server signing, their counts,
and the ``countersign partner`` commands."""

from __future__ import annotations

import hashlib
import re

import asyncpg
import pytest

from counter_worker.worker import CounterWorker
from countersign_domain.partners import KEY_PREFIX, create_partner
from tests.support.factories import SLUG, signature_rows, signer
from tests.support.http import SIGN, Client, bearer, error_of
from tests.support.processes import countersign
from tests.support.waiting import eventually

PARTNER_COUNTS = f"/v1/partner/counts?petition={SLUG}"


@pytest.fixture
async def partner_key(pool: asyncpg.Pool) -> str:
    _, key = await create_partner(
        pool, name="The Daily Example", source_code="daily-example", origins=[]
    )
    return key


async def test_a_key_is_random_and_stored_only_as_its_sha256(
    pool: asyncpg.Pool, partner_key: str
) -> None:
    assert re.fullmatch(KEY_PREFIX + r"[A-Za-z0-9_-]{43}", partner_key)
    _, other = await create_partner(pool, name="Other", source_code="other", origins=[])
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
    unbuilt = await client.get(PARTNER_COUNTS, headers=bearer(partner_key))
    assert (await error_of(unbuilt, 503))["code"] == "counts_unavailable"
    await worker.drain()

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
    path = "/v1/petitions/free-the-detainees/signatures"
    for i in range(4):
        response = await client.post(
            path, json=signer(email=f"p{i}@example.org"), headers=bearer(partner_key)
        )
        assert response.status == 202
    assert (await client.post(path, json=signer(email="other@example.org"))).status == 202
    # One of the partner's signers confirms; another is invalidated by staff.
    await pool.execute("UPDATE signatures SET confirmed_at = now() WHERE email = 'p0@example.org'")
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
