"""Which routes answer people rather than programs: their errors are HTML pages too.

A handler documented with ``html=True`` (petition_api/openapi.py) answers HTML; the error
middleware then renders any failure of it as an HTML page in the reader's language
instead of the JSON envelope. A
request that matches no route gets an HTML page when it asks for one (a browser's
``Accept: text/html``), outside the JSON API under ``/v1/``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])

_HTML_HANDLERS: set[Callable[..., object]] = set()


def html_route(handler: H) -> H:
    _HTML_HANDLERS.add(handler)
    return handler


def wants_html(request: web.Request) -> bool:
    """Whether a failure of this request is answered with an HTML page."""
    route = request.match_info.route
    if route.handler in _HTML_HANDLERS:
        return True
    if route.resource is not None or request.path.startswith("/v1/"):
        return False
    # No route: a browser navigating names text/html in its Accept header.
    return any(
        part.split(";")[0].strip().lower() == "text/html"
        for header in request.headers.getall("Accept", [])
        for part in header.split(",")
    )
