"""Cross-origin access for what the widget calls from partner pages: the petition, sign,
counts and live endpoints.

An origin is granted when the petition allows it (or allows ``*``) or an active partner
granted the petition does. Other origins get no ``Access-Control-Allow-Origin`` at all,
so their browsers refuse to hand the response to the page (and never send a JSON POST:
its preflight fails). A "simple" request needs no preflight, though: a form posted from
any page reaches the server whatever CORS says, so signing also refuses, before reading
the body, a request whose browser names an origin that may not sign
(``refuse_foreign_origin``). Hand-rolled because aiohttp-cors fixes each route's
origins at start-up, while here they are data that change at run time, per petition.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from aiohttp import web
from yarl import URL

from countersign_core.connections import TRANSIENT_ERRORS
from countersign_domain.errors import OriginNotAllowed
from petition_api import appkeys as keys

log = logging.getLogger("petition_api.cors")

ALLOWED_HEADERS = "Content-Type, Authorization"
EXPOSED_HEADERS = "ETag, Retry-After"
PREFLIGHT_MAX_AGE = 600


def cross_origin(routes: Iterable[web.RouteDef]) -> list[web.RouteDef]:
    """These routes, with the preflight (OPTIONS) of each path after its first route: the
    routes a partner's page may call from another origin. aiohttp keeps routes added one
    after the other on one path together (one resource), where ``_cors_methods`` finds
    the preflight and the methods."""
    table: list[web.RouteDef] = []
    for route in routes:
        table.append(route)
        if not any(seen.path == route.path and seen.method == "OPTIONS" for seen in table):
            table.append(web.options(route.path, preflight))
    return table


def _cors_methods(request: web.Request) -> str | None:
    """The methods a page on another origin may use on this path; None if it may not."""
    resource = request.match_info.route.resource
    return None if resource is None else _methods_of(resource)


@functools.lru_cache(maxsize=1024)  # routes do not change once the app runs
def _methods_of(resource: web.AbstractResource) -> str | None:
    if not any(route.handler is preflight for route in resource):
        return None
    return ", ".join(route.method for route in resource if route.method not in ("HEAD", "OPTIONS"))


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


def is_cross_origin(request: web.Request) -> bool:
    """Whether the request's route answers other origins (``cross_origin``)."""
    return _cors_methods(request) is not None


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """For every response to a cross-origin route, streams and errors included
    (petition_api.app's ``answer_headers``)."""
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
        raise OriginNotAllowed()
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        },
    )


# What a browser sends as Origin for a page with no origin of its own (a sandboxed frame,
# a file, some redirects): allowed only where every origin is.
OPAQUE_ORIGIN = "null"


def browser_origin(request: web.Request) -> str | None:
    """The origin the browser says the request comes from: ``Origin``, or failing that
    the origin of ``Referer`` (older browsers send no Origin on a form's POST). None when
    the request has neither (servers, curl); a Referer that is no web address names the
    opaque origin."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.strip().lower()
    referer = request.headers.get("Referer")
    if referer is None:
        return None
    try:
        url = URL(referer.strip())
    except ValueError:
        return OPAQUE_ORIGIN
    if url.scheme not in ("http", "https") or not url.raw_host:
        return OPAQUE_ORIGIN
    return str(url.origin()).lower()


def _same_origin(request: web.Request, origin: str, public_url: str | None) -> bool:
    """The API's own pages (the embed page) sign from its own origin: the one the request
    was addressed to (its Host), or COUNTERSIGN_PUBLIC_URL's."""
    try:
        url = URL(origin)
    except ValueError:
        return False
    if public_url is not None and str(URL(public_url).origin()).lower() == origin:
        return True
    return url.scheme in ("http", "https") and url.raw_authority.lower() == request.host.lower()


async def refuse_foreign_origin(request: web.Request, slug: str) -> None:
    """OriginNotAllowed when the request's browser names an origin that may not sign this
    petition; requests that name none (servers, curl) pass."""
    origin = browser_origin(request)
    if origin is None:
        return
    public_url = request.app[keys.SETTINGS].mail.public_url
    if _same_origin(request, origin, public_url):
        return
    if not await request.app[keys.ORIGINS].allows(slug, origin):
        raise OriginNotAllowed("pages of this origin may not sign this petition")
