"""Staff tokens and the check every ``/v1/admin`` request goes through.

A token is ``cs_staff_`` followed by 256 random bits; only its sha256 is stored, so the
database cannot hand out working tokens. Requests carry it as ``Authorization: Bearer``
and nowhere else: a token in a URL would end up in access logs and browser history.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from petition_api import appkeys as keys
from petition_api.errors import ApiError

TOKEN_PREFIX = "cs_staff_"  # noqa: S105  (a public marker, not a secret)


class Role(StrEnum):
    # Everything, including emails, erasure and invalidation.
    ADMIN = "admin"
    # Reads petitions and summaries, exports signatures without emails; changes nothing.
    EXPORTER = "exporter"


@dataclass(frozen=True)
class Staff:
    """Who is making the request: the token's name (written to the audit log) and role."""

    name: str
    role: Role

    def may(self, required: Role) -> bool:
        return self.role is Role.ADMIN or self.role is required


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


STAFF = web.RequestKey("staff", Staff)
# Staff bodies may be larger than the public ones (COUNTERSIGN_MAX_BODY_BYTES): a petition's
# text is up to 100,000 characters, several bytes each as JSON. Only once authenticated.
STAFF_MAX_BODY = 1024 * 1024
# Handler -> the role it needs. Routes not listed need the admin role, so a route added
# without thinking about roles is closed to exporters rather than open to them.
ROUTE_ROLES = web.AppKey("route_roles", dict[Callable[..., object], Role])

INSERT_STAFF = """
INSERT INTO staff_tokens (name, role, token_hash) VALUES ($1, $2, $3)
"""

# One round trip finds the token and records its use.
AUTHENTICATE_STAFF = """
UPDATE staff_tokens SET last_used_at = now()
WHERE token_hash = $1 AND revoked_at IS NULL
RETURNING name, role
"""

LIST_STAFF = """
SELECT name, role, created_at, last_used_at, revoked_at FROM staff_tokens ORDER BY name
"""

REVOKE_STAFF = """
UPDATE staff_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
RETURNING name
"""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(conn: asyncpg.Pool | asyncpg.Connection, name: str, role: Role) -> str:
    """Store a new token and return it: the only time it exists in clear.
    Raises asyncpg.UniqueViolationError if the name is taken (revoked names included)."""
    token = new_token()
    await conn.execute(INSERT_STAFF, name, role.value, token_hash(token))
    return token


async def list_tokens(conn: asyncpg.Pool | asyncpg.Connection) -> list[TokenInfo]:
    return [
        TokenInfo(
            name=row["name"],
            role=Role(row["role"]),
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
        )
        for row in await conn.fetch(LIST_STAFF)
    ]


async def revoke_token(conn: asyncpg.Pool | asyncpg.Connection, name: str) -> bool:
    """False if no active token has this name."""
    return await conn.fetchval(REVOKE_STAFF, name) is not None


async def authenticate(pool: asyncpg.Pool, authorization: str | None) -> Staff:
    if not authorization:
        raise _unauthorized("unauthorized", "send Authorization: Bearer <staff token>")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("unauthorized", "send Authorization: Bearer <staff token>")
    row = await pool.fetchrow(AUTHENTICATE_STAFF, token_hash(token))
    if row is None:
        raise _unauthorized("invalid_token", "the token is unknown or revoked", invalid=True)
    return Staff(name=row["name"], role=Role(row["role"]))


def _unauthorized(code: str, message: str, *, invalid: bool = False) -> ApiError:
    challenge = 'Bearer realm="countersign staff"'
    if invalid:
        challenge += ', error="invalid_token"'
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


@web.middleware
async def staff_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, then check the route's role. Runs for every path under the admin
    prefix, unknown ones included, so the admin API's shape is hidden from strangers."""
    staff = await authenticate(request.config_dict[keys.DB], request.headers.get("Authorization"))
    match_info = request.match_info
    if match_info.http_exception is None:
        required = request.app[ROUTE_ROLES].get(match_info.handler, Role.ADMIN)
        if not staff.may(required):
            raise ApiError(403, "insufficient_role", f"this needs the {required} role")
    request = request.clone(client_max_size=STAFF_MAX_BODY)
    request[STAFF] = staff
    return await handler(request)
