"""Cross-origin access for what the widget calls from partner pages: the petition, sign,
counts and live endpoints.

An origin is granted when the petition allows it (or allows ``*``) or an active partner
does. Other origins get no ``Access-Control-Allow-Origin`` at all, so their browsers
refuse to hand the response to the page (and never send a JSON POST: its preflight
fails). Hand-rolled because aiohttp-cors fixes each route's origins at start-up, while
here they are data that change at run time, per petition.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from cachetools import TTLCache
from yarl import URL

from countersign.connections import TRANSIENT_ERRORS
from petition_api import appkeys as keys
from petition_api.errors import ApiError
from petition_api.partners import PartnerDirectory

log = logging.getLogger("petition_api.cors")

ANY_ORIGIN = "*"

# Path -> methods a cross-origin page may use on it.
CORS_ROUTES = {
    "/v1/petitions/{slug}": "GET",
    "/v1/petitions/{slug}/signatures": "POST",
    "/v1/petitions/{slug}/counts": "GET",
    "/v1/petitions/{slug}/live": "GET",
}
ALLOWED_HEADERS = "Content-Type, Authorization"
EXPOSED_HEADERS = "ETag, Retry-After"
PREFLIGHT_MAX_AGE = 600

# What a normalised origin looks like; anything else (a row edited by hand, say) is
# ignored rather than written into a header.
_ORIGIN_SHAPE = re.compile(
    r"^https?://[a-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?$"
)

SELECT_PETITION_ORIGINS = "SELECT allowed_origins FROM petitions WHERE slug = $1"

SET_PETITION_ORIGINS = """
UPDATE petitions SET allowed_origins = $2 WHERE slug = $1 RETURNING allowed_origins
"""

ADD_PETITION_ORIGINS = """
UPDATE petitions
SET allowed_origins = ARRAY(SELECT DISTINCT unnest(allowed_origins || $2::text[]) ORDER BY 1)
WHERE slug = $1
RETURNING allowed_origins
"""


def normalise_origin(value: str, *, allow_any: bool = False) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin``; ValueError otherwise."""
    value = value.strip()
    if allow_any and value == ANY_ORIGIN:
        return value
    url = URL(value)
    if (
        url.scheme not in ("http", "https")
        or not url.raw_host
        or url.user is not None
        or url.path not in ("", "/")
        or url.query_string
        or url.fragment
    ):
        raise ValueError(f"not a web origin (like https://example.org): {value!r}")
    return str(url.origin())


async def set_petition_origins(
    conn: asyncpg.Pool | asyncpg.Connection, slug: str, origins: list[str]
) -> list[str] | None:
    """Replace a petition's allowed origins; None if there is no such petition."""
    found: list[str] | None = await conn.fetchval(SET_PETITION_ORIGINS, slug, origins)
    return found


async def add_petition_origins(
    conn: asyncpg.Pool | asyncpg.Connection, slug: str, origins: list[str]
) -> list[str] | None:
    found: list[str] | None = await conn.fetchval(ADD_PETITION_ORIGINS, slug, origins)
    return found


class OriginPolicy:
    """Which origins may call a petition's endpoints from the browser, cached for a few
    seconds like the petitions themselves."""

    def __init__(self, pool: asyncpg.Pool, partners: PartnerDirectory, *, ttl: float = 2.0) -> None:
        self._pool = pool
        self._partners = partners
        self._by_slug: TTLCache[str, frozenset[str]] = TTLCache(maxsize=10_000, ttl=ttl)

    async def petition_origins(self, slug: str) -> frozenset[str]:
        try:
            return self._by_slug[slug]
        except KeyError:
            pass
        stored = await self._pool.fetchval(SELECT_PETITION_ORIGINS, slug)
        origins = frozenset(o for o in stored or () if o == ANY_ORIGIN or _ORIGIN_SHAPE.match(o))
        self._by_slug[slug] = origins
        return origins

    async def origins(self, slug: str) -> frozenset[str]:
        """The petition's origins and every active partner's (may contain ``*``)."""
        partner_origins = await self._partners.origins()
        return await self.petition_origins(slug) | {
            o for o in partner_origins if _ORIGIN_SHAPE.match(o)
        }

    async def allows(self, slug: str, origin: str) -> bool:
        origins = await self.origins(slug)
        return ANY_ORIGIN in origins or origin in origins


def _cors_methods(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return CORS_ROUTES.get(resource.canonical) if resource is not None else None


async def _granted_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    try:
        allowed = await request.app[keys.ORIGINS].allows(request.match_info["slug"], origin)
    except TRANSIENT_ERRORS as exc:
        log.warning("origin check failed (%s); no CORS grant", type(exc).__name__)
        return None
    return origin if allowed else None


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: runs for every response, streams and errors included."""
    if _cors_methods(request) is None:
        return
    response.headers.add("Vary", "Origin")
    origin = await _granted_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS


async def preflight(request: web.Request) -> web.Response:
    methods = _cors_methods(request)
    assert methods is not None  # only routed for CORS paths
    requested = request.headers.get("Access-Control-Request-Method")
    if "Origin" not in request.headers or requested is None:
        return web.Response(status=204, headers={"Allow": f"{methods}, OPTIONS"})
    if requested not in methods.split(", ") or await _granted_origin(request) is None:
        raise ApiError(403, "origin_not_allowed", "this origin may not call this endpoint")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        },
    )


def setup_cors(app: web.Application) -> None:
    async def policy(app: web.Application) -> AsyncIterator[None]:
        app[keys.ORIGINS] = OriginPolicy(app[keys.DB], app[keys.PARTNERS])
        yield

    app.cleanup_ctx.append(policy)
    for path in CORS_ROUTES:
        app.router.add_route("OPTIONS", path, preflight)
    app.on_response_prepare.append(add_cors_headers)
