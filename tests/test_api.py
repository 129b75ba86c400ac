"""The public HTTP API against a real server, Postgres and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from countersign_domain.signatures import canonical_email
from petition_api.app import create_app
from petition_api.appkeys import COUNTS as COUNTS_RENDERER
from petition_api.appkeys import LIVE
from tests.support.factories import SLUG, signature_rows, signer
from tests.support.http import COUNTS, SIGN, AiohttpClient, Client, error_of
from tests.support.waiting import eventually

# -- petitions ------------------------------------------------------------------------------


async def test_petition_public_fields(client: Client) -> None:
    response = await client.get(f"/v1/petitions/{SLUG}")
    assert response.status == 200
    body = await response.json()
    assert body["slug"] == SLUG
    assert body["title"] == "Refer Syria to the ICC"
    assert body["target"] == "Russia"
    assert body["goal"] == 100000
    assert body["status"] == "open"
    assert set(body) == {
        "slug",
        "title",
        "text",
        "target",
        "goal",
        "status",
        "created_at",
        "closes_at",
        "privacy",
        "lang",
        "default_lang",
        "languages",
    }
    assert (body["lang"], body["languages"]) == ("en", ["en"])
    assert response.headers["Content-Language"] == "en"
    # No data controller or policy configured: nothing to show beside the consent box.
    assert body["privacy"] == {"data_controller": None, "policy_url": None}


async def test_unknown_and_draft_petitions_are_not_found(
    client: Client, pool: asyncpg.Pool
) -> None:
    error = await error_of(await client.get("/v1/petitions/nope"), 404)
    assert error["code"] == "petition_not_found"
    await pool.execute("INSERT INTO petitions (slug, title) VALUES ('secret-draft', 'Draft')")
    await error_of(await client.get("/v1/petitions/secret-draft"), 404)
    await error_of(await client.post("/v1/petitions/secret-draft/signatures", json=signer()), 404)


async def test_petition_past_its_close_date_reads_closed_and_refuses(
    client: Client, pool: asyncpg.Pool
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    await pool.execute(
        """INSERT INTO petitions (slug, title, status, closes_at)
           VALUES ('ended', 'Ended', 'open', $1)""",
        past,
    )
    assert (await (await client.get("/v1/petitions/ended")).json())["status"] == "closed"
    error = await error_of(await client.post("/v1/petitions/ended/signatures", json=signer()), 409)
    assert error["code"] == "petition_closed"


# -- signing ----------------------------------------------------------------------------------


async def test_sign_with_json_records_one_counted_signature(
    client: Client, pool: asyncpg.Pool
) -> None:
    response = await client.post(
        SIGN,
        json=signer(postal_code="75001", source="partner-a", consent_updates=True, country="fr"),
    )
    assert response.status == 201
    assert await response.json() == {"status": "counted"}
    [row] = await signature_rows(pool)
    assert row["name"] == "Amal Haddad"
    assert row["email"] == "amal@example.org"
    assert row["country"] == "FR"  # normalised
    assert row["postal_code"] == "75001"
    assert row["source"] == "partner-a"
    assert row["consent_updates"] is True
    assert row["counted"] is True
    # Neither the canonical address nor the raw IP is stored; only keyed hashes.
    assert len(row["email_hash"]) == 32
    assert len(row["ip_hash"]) == 32
    stored = " ".join(str(value) for value in dict(row).values())
    assert "127.0.0.1" not in stored


async def test_sign_with_a_form_post(client: Client, pool: asyncpg.Pool) -> None:
    response = await client.post(
        SIGN,
        data={
            "name": "Lina",
            "email": "lina@example.org",
            "country": "LB",
            "consent_updates": "on",
        },
    )
    assert response.status == 201
    [row] = await signature_rows(pool)
    assert (row["country"], row["consent_updates"], row["source"]) == ("LB", True, None)


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("amal@example.org", "  AMAL@Example.ORG "),
        ("amal@example.org", "amal+petition@example.org"),
        ("amal.haddad@gmail.com", "AmalHaddad+icc@googlemail.com"),
    ],
)
async def test_an_address_that_signed_gets_the_same_answer_and_no_second_row(
    client: Client, pool: asyncpg.Pool, first: str, again: str
) -> None:
    first_response = await client.post(SIGN, json=signer(email=first))
    second_response = await client.post(SIGN, json=signer(email=again, name="Someone Else"))
    assert first_response.status == second_response.status == 201
    assert await first_response.json() == await second_response.json()
    rows = await signature_rows(pool)
    assert len(rows) == 1
    assert rows[0]["name"] == "Amal Haddad"


def test_canonical_email_keeps_distinct_mailboxes_apart() -> None:
    assert canonical_email("a.b@example.org") != canonical_email("ab@example.org")
    assert canonical_email("a.b@gmail.com") == canonical_email("ab@gmail.com")
    assert canonical_email("x@example.org") != canonical_email("x@example.com")


async def test_fifty_concurrent_submissions_of_one_address_make_one_row(
    client: Client, pool: asyncpg.Pool, worker: CounterWorker, redis: Redis, layout: KeyLayout
) -> None:
    responses = await asyncio.gather(
        *(client.post(SIGN, json=signer(email=f"Amal+{i}@Example.org")) for i in range(50))
    )
    assert [r.status for r in responses] == [201] * 50
    assert len(await signature_rows(pool)) == 1
    await worker.drain()
    body = await (await client.get(COUNTS)).json()
    assert body["total"] == 1


async def test_many_signers_at_once_are_all_recorded_and_counted(
    client: Client, pool: asyncpg.Pool, worker: CounterWorker
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                SIGN, json=signer(email=f"signer{i}@example.org", country=("SY", "FR")[i % 2])
            )
            for i in range(200)
        )
    )
    assert {r.status for r in responses} == {201}
    assert len(await signature_rows(pool)) == 200
    await worker.drain()
    body = await (await client.get(COUNTS)).json()
    assert body["total"] == 200
    assert body["countries"] == [{"code": "FR", "count": 100}, {"code": "SY", "count": 100}]


async def test_filled_honeypot_answers_like_success_and_stores_nothing(
    client: Client, pool: asyncpg.Pool
) -> None:
    response = await client.post(SIGN, json=signer(website="http://spam.example"))
    assert response.status == 201
    assert await signature_rows(pool) == []


INVALID_FIELDS = [
    ({"name": ""}, "name"),
    ({"name": "x" * 121}, "name"),
    ({"name": "Visit https://spam.example now"}, "name"),
    ({"name": "cheap pills at pills.com"}, "name"),
    ({"name": "www.example"}, "name"),
    ({"name": "=HYPERLINK(1)"}, "name"),
    ({"name": "+1 555"}, "name"),
    ({"name": "-minus"}, "name"),
    ({"name": "@handle"}, "name"),
    ({"name": "new\nline"}, "name"),
    ({"name": 42}, "name"),
    ({"email": "not-an-address"}, "email"),
    ({"email": "a@b"}, "email"),
    ({"email": "x" * 250 + "@example.org"}, "email"),
    ({"country": "XX"}, "country"),
    ({"country": "Syria"}, "country"),
    ({"postal_code": "<script>"}, "postal_code"),
    ({"postal_code": "1" * 17}, "postal_code"),
    ({"source": "Partner A"}, "source"),
    ({"source": "x" * 65}, "source"),
    ({"consent_updates": "perhaps"}, "consent_updates"),
    ({"admin": True}, "admin"),
]


@pytest.mark.parametrize(("override", "field"), INVALID_FIELDS)
async def test_invalid_field_gets_422_naming_it_and_nothing_is_stored(
    client: Client, pool: asyncpg.Pool, override: dict[str, Any], field: str
) -> None:
    response = await client.post(SIGN, json=signer(**override))
    error = await error_of(response, 422)
    assert error["code"] == "validation_failed"
    assert set(error["fields"]) == {field}
    assert await signature_rows(pool) == []


@pytest.mark.parametrize("missing", ["name", "email", "country"])
async def test_required_fields(client: Client, missing: str) -> None:
    body = signer()
    del body[missing]
    error = await error_of(await client.post(SIGN, json=body), 422)
    assert error["fields"] == {missing: ["Missing data for required field."]}


async def test_errors_never_echo_the_email(client: Client) -> None:
    address = "very.private+person@example.org"
    response = await client.post(SIGN, json=signer(email=address, country="ZZ", name="=bad"))
    text = await response.text()
    assert response.status == 422
    assert "private" not in text
    assert "=bad" not in text


async def test_malformed_json_is_400(client: Client) -> None:
    response = await client.post(
        SIGN, data=b'{"name": "Amal",', headers={"Content-Type": "application/json"}
    )
    assert (await error_of(response, 400))["code"] == "invalid_json"
    response = await client.post(SIGN, json=[signer()])
    assert (await error_of(response, 400))["code"] == "invalid_json"


async def test_oversized_body_is_413(client: Client, pool: asyncpg.Pool) -> None:
    response = await client.post(SIGN, json=signer(name="x" * 40_000))
    assert (await error_of(response, 413))["code"] == "payload_too_large"
    assert await signature_rows(pool) == []


async def test_other_content_types_are_415(client: Client) -> None:
    response = await client.post(SIGN, data=b"name=Amal", headers={"Content-Type": "text/plain"})
    assert (await error_of(response, 415))["code"] == "unsupported_media_type"


async def test_unknown_petition_is_404_and_closed_is_409(
    client: Client, pool: asyncpg.Pool
) -> None:
    await error_of(await client.post("/v1/petitions/nope/signatures", json=signer()), 404)
    await pool.execute("UPDATE petitions SET status = 'closed'")

    async def reads_closed() -> bool:  # once the API's petition cache has expired
        response = await client.get(f"/v1/petitions/{SLUG}")
        return bool((await response.json())["status"] == "closed")

    await eventually(reads_closed, timeout=10)
    error = await error_of(await client.post(SIGN, json=signer()), 409)
    assert error["code"] == "petition_closed"


async def test_insert_rechecks_that_the_petition_is_open(
    client: Client, pool: asyncpg.Pool
) -> None:
    assert (await client.get(f"/v1/petitions/{SLUG}")).status == 200  # cached as open
    await pool.execute("UPDATE petitions SET status = 'closed'")
    error = await error_of(await client.post(SIGN, json=signer()), 409)
    assert error["code"] == "petition_closed"
    assert await signature_rows(pool) == []


async def test_unknown_route_and_wrong_method_use_the_envelope(client: Client) -> None:
    assert (await error_of(await client.get("/v2/nothing"), 404))["code"] == "not_found"
    error = await error_of(await client.delete(SIGN), 405)
    assert error["code"] == "method_not_allowed"


async def test_an_unexpected_failure_is_a_bare_500(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    app = create_app(settings)

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("secret detail amal@example.org")

    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    response = await client.get("/broken")
    error = await error_of(response, 500)
    assert error == {"code": "internal_error", "message": "internal error"}


# -- counts -------------------------------------------------------------------------------------


async def test_counts_are_503_until_the_worker_builds_them(client: Client) -> None:
    response = await client.get(COUNTS)
    assert (await error_of(response, 503))["code"] == "counts_unavailable"
    assert response.headers["Retry-After"] == "1"


async def test_counts_read_from_redis_with_countries_descending(
    client: Client, worker: CounterWorker
) -> None:
    countries = ["SY"] * 7 + ["FR"] * 5 + ["RU", "BV"]
    for i, country in enumerate(countries):
        assert (
            await client.post(SIGN, json=signer(email=f"s{i}@example.org", country=country))
        ).status == 201
    await worker.drain()
    response = await client.get(COUNTS)
    assert response.status == 200
    body = await response.json()
    assert body["slug"] == SLUG
    assert body["total"] == 14
    assert body["goal"] == 100000
    # Countries under COUNTERSIGN_PUBLIC_BREAKDOWN_MIN (5) are folded into "other", last.
    assert body["countries"] == [
        {"code": "SY", "count": 7},
        {"code": "FR", "count": 5},
        {"code": "other", "count": 2},
    ]
    assert datetime.fromisoformat(body["updated_at"]) <= datetime.now(UTC)
    assert response.headers["Cache-Control"] == "public, max-age=2"


async def test_counts_never_touch_postgres_rows(
    client: Client, worker: CounterWorker, pool: asyncpg.Pool
) -> None:
    await worker.drain()
    # Rows written behind the worker's back (no events) do not show: counts are Redis's.
    await pool.execute("ALTER TABLE signatures DISABLE TRIGGER signatures_count_insert")
    await pool.execute(
        """INSERT INTO signatures (petition_id, name, email, email_hash, country)
           SELECT id, 'X', 'x@example.org', '\\x00', 'SY' FROM petitions"""
    )
    assert (await (await client.get(COUNTS)).json())["total"] == 0


async def test_counts_etag_and_304(client: Client, worker: CounterWorker) -> None:
    await worker.drain()
    first = await client.get(COUNTS)
    etag = first.headers["ETag"]
    again = await client.get(COUNTS, headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag

    await client.post(SIGN, json=signer())
    await worker.drain()
    changed = await client.get(COUNTS, headers={"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert (await changed.json())["total"] == 1


# -- health -------------------------------------------------------------------------------------


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"postgres": "ok", "redis": "ok"}


async def test_each_process_renders_the_counts_once_per_change(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, worker: CounterWorker
) -> None:
    # A cache far longer than the test: only the change itself can end a rendering's life.
    api = dataclasses.replace(settings.api, counts_cache_ms=10_000)
    cached = await aiohttp_client(create_app(dataclasses.replace(settings, api=api)))
    renderer = cached.app[COUNTS_RENDERER]
    async with asyncio.timeout(5):
        await cached.app[LIVE].subscribed.wait()  # from now on it hears of every change
    await worker.drain()
    # Readers arriving together, while the first rendering is in Redis, share it.
    firsts = await asyncio.gather(*(cached.get(COUNTS) for _ in range(20)))
    assert [(await r.json())["total"] for r in firsts] == [0] * 20
    assert renderer.reads == 1
    for _ in range(5):
        assert (await (await cached.get(COUNTS)).json())["total"] == 0
    assert renderer.reads == 1

    assert (await cached.post(SIGN, json=signer())).status == 201
    await worker.drain()  # the worker's update message reaches the process's live hub

    async def shows_the_signature() -> bool:
        return bool((await (await cached.get(COUNTS)).json())["total"] == 1)

    await eventually(shows_the_signature, timeout=5)
    assert renderer.reads == 2
