"""Cross-origin access: granted to the petition's and the partners' origins, per petition,
on the petition, sign, counts and live endpoints; refused to everyone else."""

from __future__ import annotations

import asyncpg
import pytest

from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from countersign_domain.origins import normalise_origin
from countersign_domain.partners import create_partner
from petition_api.app import create_app
from tests.support.factories import SLUG, signature_rows, signer
from tests.support.http import SIGN, AiohttpClient, Client, error_of
from tests.support.waiting import eventually

CAMPAIGN = "https://campaign.example"
PARTNER = "https://partner.example"
STRANGER = "https://stranger.example"

PATHS = {
    f"/v1/petitions/{SLUG}": "GET",
    SIGN: "POST",
    f"/v1/petitions/{SLUG}/counts": "GET",
    f"/v1/petitions/{SLUG}/live": "GET",
}


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, petition_id: int
) -> Client:
    await pool.execute("UPDATE petitions SET allowed_origins = $1", [CAMPAIGN])
    await create_partner(pool, name="Partner", source_code="partner", origins=[PARTNER])
    return await aiohttp_client(create_app(settings))


def preflight_headers(origin: str, method: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type",
    }


@pytest.mark.parametrize("origin", [CAMPAIGN, PARTNER])
@pytest.mark.parametrize(("path", "method"), PATHS.items())
async def test_preflight_grants_the_petition_and_partner_origins(
    client: Client, origin: str, path: str, method: str
) -> None:
    response = await client.options(path, headers=preflight_headers(origin, method))
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Methods"] == method
    allowed_headers = response.headers["Access-Control-Allow-Headers"]
    assert {h.strip().lower() for h in allowed_headers.split(",")} == {
        "content-type",
        "authorization",
    }
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in response.headers.getall("Vary")


@pytest.mark.parametrize(("path", "method"), PATHS.items())
async def test_preflight_from_another_origin_gets_no_grant(
    client: Client, path: str, method: str
) -> None:
    response = await client.options(path, headers=preflight_headers(STRANGER, method))
    error = await error_of(response, 403)
    assert error["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_preflight_for_a_method_the_path_does_not_take_gets_no_grant(
    client: Client,
) -> None:
    response = await client.options(SIGN, headers=preflight_headers(CAMPAIGN, "DELETE"))
    await error_of(response, 403)
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_options_without_origin_just_lists_the_methods(client: Client) -> None:
    response = await client.options(SIGN)
    assert response.status == 204
    assert response.headers["Allow"] == "POST, OPTIONS"
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_responses_carry_the_grant_errors_included(
    client: Client, worker: CounterWorker
) -> None:
    await worker.drain()
    for origin, response in [
        (CAMPAIGN, await client.get(f"/v1/petitions/{SLUG}", headers={"Origin": CAMPAIGN})),
        (CAMPAIGN, await client.get(f"/v1/petitions/{SLUG}/counts", headers={"Origin": CAMPAIGN})),
        (CAMPAIGN, await client.post(SIGN, json=signer(), headers={"Origin": CAMPAIGN})),
        (PARTNER, await client.post(SIGN, json=signer(email="bad"), headers={"Origin": PARTNER})),
        (PARTNER, await client.get("/v1/petitions/unknown/counts", headers={"Origin": PARTNER})),
    ]:
        assert response.headers["Access-Control-Allow-Origin"] == origin, response.status
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
        assert "Origin" in response.headers.getall("Vary")


async def test_other_origins_get_answers_without_a_grant(
    client: Client, worker: CounterWorker
) -> None:
    await worker.drain()
    response = await client.get(f"/v1/petitions/{SLUG}/counts", headers={"Origin": STRANGER})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers.getall("Vary")  # caches must not mix the two


async def test_the_live_stream_carries_the_grant(client: Client, worker: CounterWorker) -> None:
    await worker.drain()
    async with client.get(f"/v1/petitions/{SLUG}/live", headers={"Origin": PARTNER}) as stream:
        assert stream.status == 200
        assert stream.headers["Access-Control-Allow-Origin"] == PARTNER
    async with client.get(f"/v1/petitions/{SLUG}/live", headers={"Origin": STRANGER}) as stream:
        assert "Access-Control-Allow-Origin" not in stream.headers


async def test_other_routes_never_answer_cors(client: Client) -> None:
    response = await client.get("/healthz", headers={"Origin": CAMPAIGN})
    assert "Access-Control-Allow-Origin" not in response.headers
    response = await client.options("/healthz", headers=preflight_headers(CAMPAIGN, "GET"))
    assert response.status == 405


async def test_a_star_petition_grants_any_origin(client: Client, pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE petitions SET allowed_origins = '{*}'")

    async def granted() -> bool:
        response = await client.options(SIGN, headers=preflight_headers(STRANGER, "POST"))
        return response.headers.get("Access-Control-Allow-Origin") == STRANGER

    await eventually(granted, timeout=10)


async def test_origins_are_per_petition(client: Client, pool: asyncpg.Pool) -> None:
    await pool.execute(
        """INSERT INTO petitions (slug, title, status, allowed_origins, require_confirmation)
           VALUES ('other', 'Other', 'open', '{https://other.example}', false)"""
    )
    other = "/v1/petitions/other/signatures"
    granted = await client.options(
        other, headers=preflight_headers("https://other.example", "POST")
    )
    assert granted.status == 204
    refused = await client.options(SIGN, headers=preflight_headers("https://other.example", "POST"))
    assert refused.status == 403
    # A partner's origin is granted on every petition.
    assert (await client.options(other, headers=preflight_headers(PARTNER, "POST"))).status == 204


async def test_revoking_a_partner_withdraws_its_origin_within_seconds(
    client: Client, pool: asyncpg.Pool
) -> None:
    assert (await client.options(SIGN, headers=preflight_headers(PARTNER, "POST"))).status == 204
    await pool.execute("UPDATE partners SET revoked_at = now()")

    async def refused() -> bool:
        response = await client.options(SIGN, headers=preflight_headers(PARTNER, "POST"))
        return response.status == 403

    await eventually(refused, timeout=10)


async def test_a_refused_origin_can_still_be_signed_from_without_a_browser(
    client: Client, pool: asyncpg.Pool
) -> None:
    # CORS only tells browsers what a page may read; it is not authentication. A
    # request from a server (no preflight) is answered, just without a grant.
    response = await client.post(SIGN, json=signer(), headers={"Origin": STRANGER})
    assert response.status == 201
    assert "Access-Control-Allow-Origin" not in response.headers
    assert len(await signature_rows(pool)) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://Example.org", "https://example.org"),
        ("https://example.org/", "https://example.org"),
        ("https://example.org:443", "https://example.org"),
        ("http://localhost:8081", "http://localhost:8081"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        (" https://example.org ", "https://example.org"),
    ],
)
def test_normalise_origin(value: str, expected: str) -> None:
    assert normalise_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "example.org",
        "ftp://example.org",
        "https://example.org/path",
        "https://example.org?q=1",
        "https://user@example.org",
        "https://example.org#top",
        "*",
        "null",
        "",
    ],
)
def test_normalise_origin_refuses_what_is_not_an_origin(value: str) -> None:
    with pytest.raises(ValueError, match="not a web origin"):
        normalise_origin(value)


def test_star_only_where_allowed() -> None:
    assert normalise_origin("*", allow_any=True) == "*"
