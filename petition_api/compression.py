"""Brotli or gzip for what browsers read: pages, scripts and stylesheets.

aiohttp's own ``enable_compression`` knows deflate and gzip (and picks deflate first); this
middleware offers brotli where the browser accepts it, else gzip. A body with an ETag
(a versioned script) is compressed once, at the best level, and kept by its content's
hash; a page is compressed quickly as it is sent. A compressed answer carries a weak
ETag: the same content, other bytes.
"""

from __future__ import annotations

import gzip
import hashlib

import brotli
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from cachetools import LRUCache

# What is worth compressing: text that browsers read.
COMPRESSIBLE = frozenset({"text/html", "text/css", "text/javascript", "application/javascript"})
# Below this, the headers cost more than the bytes saved.
MIN_SIZE = 512
# Codings we offer, in our order of preference.
CODINGS = ("br", "gzip")

_compressed_assets: LRUCache[tuple[bytes, str], bytes] = LRUCache(maxsize=64)


def accepted_coding(accept_encoding: str) -> str | None:
    """Our preferred coding among those the header accepts (q > 0), or None.

    Hand-written: a header of comma-separated tokens with optional q-values, for which
    no library is lighter than these lines.
    """
    accepted: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        token, _, params = item.strip().partition(";")
        quality = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        accepted[token.strip()] = quality
    for coding in CODINGS:
        if accepted.get(coding, accepted.get("*", 0.0)) > 0:
            return coding
    return None


def compress(body: bytes, coding: str, *, dynamic: bool) -> bytes:
    """Quick levels for pages made per request; the best for assets made once."""
    if coding == "br":
        compressed: bytes = brotli.compress(
            body, mode=brotli.MODE_TEXT, quality=5 if dynamic else 11
        )
        return compressed
    return gzip.compress(body, compresslevel=6 if dynamic else 9, mtime=0)


@web.middleware
async def compression_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        not isinstance(response, web.Response)
        or response.content_type not in COMPRESSIBLE
        or hdrs.CONTENT_ENCODING in response.headers
        or not isinstance(response.body, bytes)
    ):
        return response
    response.headers.add(hdrs.VARY, "Accept-Encoding")
    body = response.body
    coding = accepted_coding(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    if coding is None or len(body) < MIN_SIZE:
        return response
    etag = response.headers.get(hdrs.ETAG)
    if etag is None:
        response.body = compress(body, coding, dynamic=True)
    else:
        key = (hashlib.blake2b(body, digest_size=16).digest(), coding)
        if key not in _compressed_assets:
            _compressed_assets[key] = compress(body, coding, dynamic=False)
        response.body = _compressed_assets[key]
        response.headers[hdrs.ETAG] = etag if etag.startswith("W/") else f"W/{etag}"
    response.headers[hdrs.CONTENT_ENCODING] = coding
    return response
