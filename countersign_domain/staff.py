"""Staff: tokens, accounts, roles, and who a token belongs to.

A token is ``cs_staff_`` plus 32 random bytes; only its SHA-256 is stored, and it is
shown once, at creation. An account is a person with a name, an email address (where
console sign-in links go) and a role. Creating, revoking, inviting and removing write
their audit entries here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from countersign_core.connections import transaction
from countersign_domain import audit
from countersign_domain.errors import (
    StaffAccountExists,
    StaffAccountNotFound,
    StaffNameTaken,
    StaffTokenNotFound,
    ValidationFailed,
)

TOKEN_PREFIX = "cs_staff_"  # noqa: S105  (a public marker, not a secret)


# A token's name, as the audit log shows it (sql/002_staff.sql checks the same pattern).
STAFF_NAME = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
STAFF_NAME_RULE = (
    "Use 1-64 of letters, digits, '.', '_', '@' and '-', starting with one of the first two."
)


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


async def create_token(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, name: str, role: Role
) -> str:
    """Store a new token, write ``token.create``, and return the token: the only time it
    exists in clear. Raises StaffNameTaken (revoked names included), ValidationFailed."""
    if not re.fullmatch(STAFF_NAME, name):
        raise ValidationFailed(fields={"name": [STAFF_NAME_RULE]})
    token = new_token()
    async with transaction(db) as conn:
        try:
            await conn.execute(INSERT_STAFF, name, role.value, token_hash(token))
        except asyncpg.UniqueViolationError:
            raise StaffNameTaken from None
        await audit.record(conn, actor, "token.create", details={"name": name, "role": role.value})
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


async def revoke_token(db: asyncpg.Pool | asyncpg.Connection, *, actor: str, name: str) -> None:
    """Revoke the active token of this name and write ``token.revoke``; its next request
    gets 401. Raises StaffTokenNotFound."""
    async with transaction(db) as conn:
        if await conn.fetchval(REVOKE_STAFF, name) is None:
            raise StaffTokenNotFound
        await audit.record(conn, actor, "token.revoke", details={"name": name})


async def staff_for_token(conn: asyncpg.Pool | asyncpg.Connection, token: str) -> Staff | None:
    """The active token's holder (recording the use), or None if unknown or revoked."""
    row = await conn.fetchrow(AUTHENTICATE_STAFF, token_hash(token))
    return Staff(name=row["name"], role=Role(row["role"])) if row else None


# -- accounts (the console's people) ------------------------------------------------------

# A person's name as they write it: 1-64 characters, no control or formatting characters.
ACCOUNT_NAME_RULE = "Use 1-64 characters, without control characters."
ACCOUNT_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{2,63}$")
ACCOUNT_EMAIL_RULE = "Not a valid email address."


@dataclass(frozen=True)
class StaffAccount:
    id: int
    name: str
    email: str
    role: Role
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StaffAccount:
        return cls(row["id"], row["name"], row["email"], Role(row["role"]), row["created_at"])


INSERT_ACCOUNT = """
INSERT INTO staff_accounts (name, email, role) VALUES ($1, $2, $3)
RETURNING id, name, email, role, created_at
"""

LIST_ACCOUNTS = """
SELECT id, name, email, role, created_at FROM staff_accounts
WHERE removed_at IS NULL ORDER BY name
"""

REMOVE_ACCOUNT = """
UPDATE staff_accounts SET removed_at = now()
WHERE removed_at IS NULL AND ($1::bigint IS NULL OR id = $1)
  AND ($2::text IS NULL OR lower(email) = lower($2))
RETURNING id, name, email, role, created_at
"""

END_ACCOUNT_SESSIONS = """
UPDATE staff_sessions SET ended_at = now() WHERE account_id = $1 AND ended_at IS NULL
"""


def clean_account_fields(name: str, email: str) -> tuple[str, str]:
    """The name (NFC, trimmed) and address (trimmed) as stored; ValidationFailed if not."""
    name = unicodedata.normalize("NFC", name.strip())
    email = email.strip()
    refused: dict[str, list[str]] = {}
    if not 1 <= len(name) <= 64 or any(unicodedata.category(c)[0] == "C" for c in name):
        refused["name"] = [ACCOUNT_NAME_RULE]
    if not ACCOUNT_EMAIL.fullmatch(email):
        refused["email"] = [ACCOUNT_EMAIL_RULE]
    if refused:
        raise ValidationFailed(fields=refused)
    return name, email


async def invite_staff(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, name: str, email: str, role: Role
) -> StaffAccount:
    """Create an account (it signs in with an emailed link) and write ``staff.invite``.
    Raises StaffAccountExists, ValidationFailed."""
    name, email = clean_account_fields(name, email)
    async with transaction(db) as conn:
        try:
            row = await conn.fetchrow(INSERT_ACCOUNT, name, email, role.value)
        except asyncpg.UniqueViolationError:
            raise StaffAccountExists from None
        account = StaffAccount.from_row(row)
        await audit.record(
            conn, actor, "staff.invite", details={"account": account.id, "role": role.value}
        )
    return account


async def list_staff(conn: asyncpg.Pool | asyncpg.Connection) -> list[StaffAccount]:
    """Active accounts, by name."""
    return [StaffAccount.from_row(row) for row in await conn.fetch(LIST_ACCOUNTS)]


async def remove_staff(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    account_id: int | None = None,
    email: str | None = None,
) -> StaffAccount:
    """Remove an active account (by id or address): its sessions end at once and its
    links stop working. Writes ``staff.remove``. Raises StaffAccountNotFound."""
    if account_id is None and email is None:
        raise ValueError("give an account id or an address")
    async with transaction(db) as conn:
        row = await conn.fetchrow(REMOVE_ACCOUNT, account_id, email and email.strip())
        if row is None:
            raise StaffAccountNotFound
        account = StaffAccount.from_row(row)
        await conn.execute(END_ACCOUNT_SESSIONS, account.id)
        await audit.record(conn, actor, "staff.remove", details={"account": account.id})
    return account
