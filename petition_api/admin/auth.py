"""Staff tokens and the check every ``/v1/admin`` request goes through.

A token is ``cs_staff_`` followed by 256 random bits; only its sha256 is stored, so the
database cannot hand out working tokens. Requests carry it as ``Authorization: Bearer``
and nowhere else: a token in a URL would end up in access logs and browser history.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from countersign_domain.errors import InsufficientRole, InvalidToken, Problem, Unauthorized
from countersign_domain.staff import Role, Staff, staff_for_token
from petition_api import appkeys as keys

STAFF = web.RequestKey("staff", Staff)
# Staff bodies may be larger than the public ones (COUNTERSIGN_MAX_BODY_BYTES): a petition's
# text is up to 100,000 characters, several bytes each as JSON. Only once authenticated.
STAFF_MAX_BODY = 1024 * 1024
# Handler -> the role it needs, as its documentation declares it (admin/routes.py,
# ``staff_operation``). Handlers not listed need the admin role, so a route added without
# thinking about roles is closed to exporters rather than open to them.
_ROLES: dict[Callable[..., object], Role] = {}


def require_role(handler: Callable[..., object], role: Role) -> None:
    _ROLES[handler] = role


async def authenticate(pool: asyncpg.Pool, authorization: str | None) -> Staff:
    if not authorization:
        raise _unauthorized(Unauthorized, "send Authorization: Bearer <staff token>")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized(Unauthorized, "send Authorization: Bearer <staff token>")
    staff = await staff_for_token(pool, token)
    if staff is None:
        raise _unauthorized(InvalidToken, "the token is unknown or revoked")
    return staff


def _unauthorized(problem: type[Problem], message: str) -> Problem:
    challenge = 'Bearer realm="countersign staff"'
    if problem is InvalidToken:
        challenge += ', error="invalid_token"'
    return problem(message, headers={"WWW-Authenticate": challenge})


@web.middleware
async def staff_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, then check the route's role. Runs for every path under the admin
    prefix, unknown ones included, so the admin API's shape is hidden from strangers."""
    staff = await authenticate(request.config_dict[keys.DB], request.headers.get("Authorization"))
    match_info = request.match_info
    if match_info.http_exception is None:
        required = _ROLES.get(match_info.handler, Role.ADMIN)
        if not staff.may(required):
            raise InsufficientRole(f"this needs the {required} role")
    request = request.clone(client_max_size=STAFF_MAX_BODY)
    request[STAFF] = staff
    return await handler(request)
