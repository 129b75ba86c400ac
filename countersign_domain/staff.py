"""Staff: tokens, roles, and who a token belongs to.

A token is ``cs_staff_`` plus 32 random bytes; only its SHA-256 is stored, and it is
shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

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


async def staff_for_token(conn: asyncpg.Pool | asyncpg.Connection, token: str) -> Staff | None:
    """The active token's holder (recording the use), or None if unknown or revoked."""
    row = await conn.fetchrow(AUTHENTICATE_STAFF, token_hash(token))
    return Staff(name=row["name"], role=Role(row["role"])) if row else None
