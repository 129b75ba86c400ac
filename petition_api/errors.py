"""One JSON error envelope for every failure: ``{"error": {"code", "message", "fields"?}}``.

Handlers raise the typed problems of countersign_domain/errors.py (or let marshmallow's
ValidationError and a back end's transient errors through); the answers made here are the
one place that turns them into answers (in the API's one middleware,
petition_api.observability). Messages never echo what the client sent: a
signer's email or name must not come back in an error (or be logged because of one).
"""

from __future__ import annotations

import logging
from typing import Any, cast

from aiohttp import web
from marshmallow import ValidationError

from countersign_core.connections import TRANSIENT_ERRORS
from countersign_core.logs import frames_of
from countersign_domain.errors import (
    BadRequest,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from petition_api import appkeys as keys
from petition_api.html import wants_html

log = logging.getLogger("petition_api")

# aiohttp's own refusals (no route, wrong method, body too large), by status.
_HTTP_PROBLEMS: dict[int, type[Problem]] = {
    problem.status: problem
    for problem in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        ServiceUnavailable,
    )
}


def as_problem(exc: BaseException) -> Problem | None:
    """The problem an exception answers as; None for an unexpected one (a 500)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ValidationError):
        return ValidationFailed(fields=cast(dict[str, Any], exc.messages))
    if isinstance(exc, TRANSIENT_ERRORS):
        return ServiceUnavailable()
    return None


def error_response(problem: Problem, request: web.Request | None = None) -> web.Response:
    """The problem's answer: the JSON envelope, or for a browser on an HTML route, a page."""
    # The root app's pages (a sub-app's request reaches them through its parents).
    pages = request.config_dict.get(keys.PAGES) if request is not None else None
    if request is not None and pages is not None and wants_html(request):
        page = pages.error(request, problem.status, problem.code)
        page.headers.update(problem.headers or {})
        return page
    error: dict[str, Any] = {"code": problem.code, "message": problem.message}
    if problem.fields:
        error["fields"] = problem.fields
    return web.json_response({"error": error}, status=problem.status, headers=problem.headers)


def refusal_response(exc: web.HTTPException, request: web.Request) -> web.Response:
    """The answer to one of aiohttp's refusals (no route, wrong method, body too large)."""
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    known = _HTTP_PROBLEMS.get(exc.status)
    if known is not None:
        return error_response(known(headers=headers), request)
    # A refusal of aiohttp's that no route of ours leads to: said as it is.
    body = {"error": {"code": "http_error", "message": exc.reason.lower()}}
    return web.json_response(body, status=exc.status, headers=headers)


def failure_response(request: web.Request, exc: Exception) -> web.Response:
    """The answer to an exception a handler raised: its problem's, or a 500 (logged)."""
    problem = as_problem(exc)
    if isinstance(exc, TRANSIENT_ERRORS):
        log.warning(
            "%s %s: back end unavailable (%s)",
            request.method,
            _route(request),
            type(exc).__name__,
        )
    if problem is not None:
        return error_response(problem, request)
    # The exception's message may quote a row (asyncpg's DETAIL does): log the type
    # and the frames, never the message.
    log.error(
        "%s %s failed with %s\n%s",
        request.method,
        _route(request),
        type(exc).__name__,
        frames_of(exc.__traceback__),
    )
    return error_response(InternalError(), request)


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "?"
