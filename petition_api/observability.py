"""Per request: an id, one access log line, and the latency histogram.

The request id is the client's X-Request-ID when well formed (16-64 hexadecimal digits
and dashes: UUIDs, proxies' ids; a shape that cannot carry a name or an address), else a
new one; every answer echoes it, and every log line written while handling the request
carries it. The access log names the route pattern, never the path or the query string,
and no client address, user agent or referrer: those identify signers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Histogram

from countersign_core.logs import REQUEST_ID, FixedFields, trusted_info
from petition_api import metrics
from petition_api.errors import failure_response, refusal_response

access_log = logging.getLogger("petition_api.access")

REQUEST_ID_HEADER = "X-Request-ID"
_WELL_FORMED_ID = re.compile(r"[0-9A-Fa-f-]{16,64}")
# Metric labels must stay few: any other method a client invents is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLIENT_CLOSED = 499  # nginx's code for a client that hung up before the answer


def new_request_id() -> str:
    # An id, not a secret: the process's own random numbers, without uuid4's system call.
    return f"{random.getrandbits(128):032x}"


# Per (method, route, status): its latency histogram and its access-log fields, encoded;
# made once, not per request.
_observers: dict[tuple[str, str, int], tuple[Histogram, FixedFields]] = {}


def _observer_of(method: str, route: str, status: int) -> tuple[Histogram, FixedFields]:
    observer = _observers.get((method, route, status))
    if observer is None:
        histogram = metrics.REQUEST_DURATION.labels(method, route, str(status))
        observer = _observers[method, route, status] = (
            histogram,
            FixedFields(method=method, route=route, status=status),
        )
    return observer


def route_of(request: web.Request) -> str:
    """The matched route's pattern (``/v1/petitions/{slug}``), or "unmatched"."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API's one middleware: the request id, the error envelope (petition_api.errors),
    the access log line and the latency histogram, in one layer per request."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    # Each request runs in a task of its own, so the id stays set for its whole life,
    # answer headers included (answer_headers), and is gone with the task.
    REQUEST_ID.set(offered if offered and _WELL_FORMED_ID.fullmatch(offered) else new_request_id())
    started = time.monotonic()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # a redirect: aiohttp sends it
                status = exc.status
                raise
            response = refusal_response(exc, request)
        except Exception as exc:
            response = failure_response(request, exc)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        duration = time.monotonic() - started
        method = request.method if request.method in _METHODS else "other"
        histogram, fields = _observer_of(method, route_of(request), status)
        histogram.observe(duration)
        # Route pattern, method, status and duration only: trusted_info's kind of line.
        trusted_info(access_log, "request", fields, duration=round(duration, 4))


def stamp_request_id(response: web.StreamResponse) -> None:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
