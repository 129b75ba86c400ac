"""The embeddable widget's routes: its script, and the iframe page.

``/widget.js`` is what partners paste. It is a tiny loader, cached for five minutes,
that loads ``/widget/<content hash>.js``, cached for a year as immutable: a new version
reaches every partner page within minutes, while the script itself is downloaded once
per version. ``/embed/{slug}`` is the same widget as a full page for sites that only
allow iframes; its ``frame-ancestors`` are the origins allowed to call the API for that
petition (the petition's and the partners'), or ``'none'``.
"""

from __future__ import annotations

import html
import re

from aiohttp import web
from marshmallow import Schema, fields

from countersign_core.connections import TRANSIENT_ERRORS
from countersign_domain.errors import NotFound, PetitionNotFound, ServiceUnavailable
from countersign_domain.origins import ANY_ORIGIN
from petition_api import appkeys as keys
from petition_api.openapi import SLUG, Reply, documented
from petition_api.petitions import public_petition
from petition_api.widget_assets import widget_div

LOADER_MAX_AGE = 300
IMMUTABLE = "public, max-age=31536000, immutable"

# A BCP 47 tag as far as the page needs one (``fr``, ``pt-BR``); anything else is ignored.
_LANGUAGE_TAG = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,2}$")

_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_SCRIPT_HEADERS = {
    **_SECURITY_HEADERS,
    # Partner pages that isolate themselves (COEP) may still load it.
    "Cross-Origin-Resource-Policy": "cross-origin",
}


IF_NONE_MATCH = {"If-None-Match": "An ETag from an earlier answer."}
CACHED = {
    "ETag": ("The script's version.", True),
    "Cache-Control": ("How long to reuse it.", True),
}
NOT_MODIFIED = Reply("Unchanged since the ETag sent in If-None-Match.", headers=CACHED)


class EmbedQuerySchema(Schema):
    lang = fields.String(
        metadata={
            "description": "The widget's language, a BCP 47 tag such as fr or pt-BR; "
            "anything else is ignored."
        }
    )


@documented(
    "The widget's loader script, the one partners paste",
    tags=("widget",),
    header_parameters=IF_NONE_MATCH,
    responses={
        200: Reply(
            "The loader (cached for minutes).", text_types=("text/javascript",), headers=CACHED
        ),
        304: NOT_MODIFIED,
    },
)
async def loader(request: web.Request) -> web.Response:
    assets = request.app[keys.WIDGET]
    return javascript_response(
        assets.loader,
        f"public, max-age={LOADER_MAX_AGE}",
        etag=assets.version,
        request=request,
    )


@documented(
    "The widget's script, by version",
    tags=("widget",),
    path_parameters={"version": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}},
    header_parameters=IF_NONE_MATCH,
    responses={
        200: Reply(
            "The script: cached for a year when `version` is the current one, briefly otherwise.",
            text_types=("text/javascript",),
            headers=CACHED,
        ),
        304: NOT_MODIFIED,
    },
    # `version` is not 1-64 hexadecimal digits: no route.
    problems=(NotFound,),
)
async def script(request: web.Request) -> web.Response:
    assets = request.app[keys.WIDGET]
    if request.match_info["version"] == assets.version:
        return javascript_response(assets.script, IMMUTABLE, etag=assets.version, request=request)
    # Another version (a process of the previous or next deploy answered the loader):
    # serve ours, but briefly, since this URL should hold different bytes.
    return javascript_response(
        assets.script,
        f"public, max-age={LOADER_MAX_AGE}",
        etag=assets.version,
        request=request,
    )


def javascript_response(
    body: bytes, cache: str, *, etag: str, request: web.Request
) -> web.Response:
    """A script with its ETag, or 304 when the browser's copy is that version."""
    headers = {**_SCRIPT_HEADERS, "Cache-Control": cache, "ETag": f'"{etag}"'}
    if any(candidate.value == etag for candidate in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="text/javascript", charset="utf-8", headers=headers)


@documented(
    "The widget as a page of its own, for an iframe",
    html=True,
    tags=("widget",),
    path_parameters={"slug": SLUG},
    query=EmbedQuerySchema,
    responses={
        200: Reply(
            "The page; its frame-ancestors are the origins allowed for the petition.",
            text_types=("text/html",),
        ),
    },
    problems=(PetitionNotFound, ServiceUnavailable),
)
async def embed(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    try:
        origins = await request.app[keys.ORIGINS].origins(petition.slug)
    except TRANSIENT_ERRORS:
        raise ServiceUnavailable() from None
    lang = request.query.get("lang", "")
    lang = lang if _LANGUAGE_TAG.match(lang) else ""
    assets = request.app[keys.WIDGET]
    page = assets.embed_page.substitute(
        lang=html.escape(lang or "en"),
        title=html.escape(petition.title),
        widget=widget_div(petition.slug, lang=lang or None),
        version=assets.version,
    )
    return web.Response(
        text=page,
        content_type="text/html",
        headers={
            **_SECURITY_HEADERS,
            "Content-Security-Policy": content_security_policy(origins),
            "Cache-Control": "no-cache",
        },
    )


def content_security_policy(frame_origins: frozenset[str]) -> str:
    if ANY_ORIGIN in frame_origins:
        ancestors = "*"
    elif frame_origins:
        ancestors = " ".join(sorted(frame_origins))
    else:
        ancestors = "'none'"
    return (
        "default-src 'self'; script-src 'self'; connect-src 'self'; style-src 'self'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {ancestors}"
    )
