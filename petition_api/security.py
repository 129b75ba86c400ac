"""Security headers on every answer, and a content security policy on HTML.

A handler that needs another policy sets its own Content-Security-Policy (an embeddable
page, say, with ``frame-ancestors`` naming partner sites); these are only defaults.
"""

from __future__ import annotations

from aiohttp import web

# Pages of ours load only our own scripts, styles and images, and nobody frames them.
HTML_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Anything else (JSON, scripts) is not a page: should a browser render it, nothing runs.
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"


def set_security_headers(response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    html = response.content_type == "text/html"
    headers.setdefault("Content-Security-Policy", HTML_POLICY if html else OTHER_POLICY)
