"""Cross-origin access: granted to the petition's and its granted partners' origins, per
petition, on the petition, sign, counts and live endpoints; refused to everyone else. And
signing from a browser on another site, which CORS alone does not stop."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from countersign_domain.origins import normalise_origin
from countersign_domain.partners import create_partner, grant_petition
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
    await create_partner(
        pool, actor="test", name="Partner", source_code="partner", origins=[PARTNER]
    )
    await grant_petition(pool, actor="tests", source_code="partner", slug=SLUG)
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
        (
            CAMPAIGN,
            await client.post(
                SIGN,
                data=b"{not json",
                headers={"Origin": CAMPAIGN, "Content-Type": "application/json"},
            ),
        ),
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
    own = await client.options(other, headers=preflight_headers("https://other.example", "POST"))
    assert own.status == 204
    refused = await client.options(SIGN, headers=preflight_headers("https://other.example", "POST"))
    assert refused.status == 403
    # A partner's origin only on the petitions granted it: a preflight on another petition
    # does not tell that the origin is a partner's.
    refused = await client.options(other, headers=preflight_headers(PARTNER, "POST"))
    assert (await error_of(refused, 403))["code"] == "origin_not_allowed"
    await grant_petition(pool, actor="tests", source_code="partner", slug="other")

    async def partner_granted() -> bool:
        response = await client.options(other, headers=preflight_headers(PARTNER, "POST"))
        return response.status == 204

    await eventually(partner_granted, timeout=10)


async def test_revoking_a_partner_withdraws_its_origin_within_seconds(
    client: Client, pool: asyncpg.Pool
) -> None:
    assert (await client.options(SIGN, headers=preflight_headers(PARTNER, "POST"))).status == 204
    await pool.execute("UPDATE partners SET revoked_at = now()")

    async def refused() -> bool:
        response = await client.options(SIGN, headers=preflight_headers(PARTNER, "POST"))
        return response.status == 403

    await eventually(refused, timeout=10)


async def test_a_request_without_origin_or_referer_still_signs(
    client: Client, pool: asyncpg.Pool
) -> None:
    # Servers and curl send neither header: the origins are no authentication, and
    # anyone may sign.
    response = await client.post(SIGN, json=signer())
    assert response.status == 201
    assert "Access-Control-Allow-Origin" not in response.headers
    assert len(await signature_rows(pool)) == 1


FORM = {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"}


def multipart() -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in FORM.items():
        form.add_field(name, value)
    return form


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": STRANGER},
        {"Origin": "null"},  # a sandboxed frame, a file, a data: URL
        {"Referer": f"{STRANGER}/a/page?x=1"},  # an older browser sends no Origin
        {"Referer": "not a web address"},
        {"Origin": STRANGER, "Referer": f"{CAMPAIGN}/page"},  # Origin decides
    ],
    ids=["origin", "null", "referer", "bad-referer", "origin-first"],
)
@pytest.mark.parametrize("body", ["form", "multipart", "json"])
async def test_another_site_cannot_make_its_visitors_sign(
    client: Client, pool: asyncpg.Pool, headers: dict[str, str], body: str
) -> None:
    # A "simple" cross-site POST (a form on any page, submitted by script) needs no
    # preflight: the browser sends it whatever CORS says. It is refused before its body
    # is read, and nothing is stored.
    if body == "form":
        response = await client.post(SIGN, data=FORM, headers=headers)
    elif body == "multipart":
        response = await client.post(SIGN, data=multipart(), headers=headers)
    else:
        response = await client.post(SIGN, json=signer(), headers=headers)
    assert (await error_of(response, 403))["code"] == "origin_not_allowed"
    assert await signature_rows(pool) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": CAMPAIGN},
        {"Origin": PARTNER},
        {"Referer": f"{CAMPAIGN}/article"},
        {},
    ],
    ids=["petition", "partner", "referer", "none"],
)
async def test_allowed_sites_sign_with_a_simple_form(
    client: Client, pool: asyncpg.Pool, headers: dict[str, str]
) -> None:
    response = await client.post(SIGN, data=FORM, headers=headers)
    assert response.status == 201, await response.text()
    assert len(await signature_rows(pool)) == 1


async def test_the_api_own_pages_sign_from_its_own_origin(
    client: Client, pool: asyncpg.Pool
) -> None:
    # The embed page (/embed/{slug}) is served by the API itself: same origin.
    own = str(client.make_url("")).rstrip("/")
    response = await client.post(SIGN, json=signer(), headers={"Origin": own})
    assert response.status == 201, await response.text()


async def test_another_site_cannot_post_the_petition_page_form(
    client: Client, pool: asyncpg.Pool
) -> None:
    # The petition's own page (/petitions/{slug}) takes the same form: a page elsewhere
    # posting it gets the error page, in HTML, and nothing is stored.
    page = f"/petitions/{SLUG}"
    refused = await client.post(page, data=FORM, headers={"Origin": STRANGER})
    assert refused.status == 403
    assert refused.content_type == "text/html"
    assert refused.headers["X-Error-Code"] == "origin_not_allowed"
    assert await signature_rows(pool) == []
    own = str(client.make_url("")).rstrip("/")
    signed = await client.post(page, data=FORM, headers={"Origin": own})
    assert signed.status == 201, await signed.text()
    assert len(await signature_rows(pool)) == 1


async def test_a_star_petition_takes_every_origin(client: Client, pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE petitions SET allowed_origins = '{*}'")

    async def signed() -> bool:
        response = await client.post(SIGN, data=FORM, headers={"Origin": "null"})
        return response.status == 201

    await eventually(signed, timeout=10)
    response = await client.post(
        SIGN, json=signer(email="other@example.org"), headers={"Origin": STRANGER}
    )
    assert response.status == 201


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
