"""Console sign-in: one-time links sent by email, staff tokens, and browser sessions.

A sign-in link's secret is an HMAC, under the secret key, of a random nonce stored with
the link: the mail sender can write the link from the row, the database alone cannot,
and only the secret's SHA-256 is kept to find the link again. A link works once, for a
few minutes, and only while its account is active. A session id is 256 random bits,
stored as its SHA-256; a session ends at its absolute expiry, after an idle time, at
sign-out, or when its account is removed (or its token revoked).

Signing in, signing out and failed attempts write their audit entries here. A request
for a link for an address that has no account does nothing and says so to nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import asyncpg

from countersign_core.connections import transaction
from countersign_domain import audit
from countersign_domain.errors import SignInFailed
from countersign_domain.staff import Role, Staff, token_hash

# Who the audit log names when nobody is known yet.
ANONYMOUS = "anonymous"
_LINK_PURPOSE = b"countersign staff sign-in v1\0"


@dataclass(frozen=True)
class SessionPolicy:
    link_minutes: int
    idle_minutes: int
    session_hours: int


@dataclass(frozen=True)
class OpenedSession:
    """A new session: its secret goes in the cookie, and nowhere else."""

    secret: str
    staff: Staff


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def sign_in_secret(secret_key: str, nonce: bytes) -> str:
    """The secret of the link made with ``nonce`` (what the emailed URL carries)."""
    digest = hmac.new(secret_key.encode(), _LINK_PURPOSE + nonce, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# -- links --------------------------------------------------------------------------------

# One statement either way: an address with no active account inserts nothing.
CREATE_LINK = """
WITH account AS (
    SELECT id, name FROM staff_accounts WHERE lower(email) = lower($1) AND removed_at IS NULL
), link AS (
    INSERT INTO staff_sign_in_links (account_id, nonce, token_hash, expires_at)
    SELECT id, $2, $3, now() + make_interval(mins => $4) FROM account
    RETURNING id
), job AS (
    INSERT INTO email_jobs (sign_in_link_id, kind, sequence, language)
    SELECT id, 'staff_sign_in', 1, $5 FROM link
)
SELECT name FROM account
"""

USE_LINK = """
UPDATE staff_sign_in_links l SET used_at = now()
FROM staff_accounts a
WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > now()
  AND a.id = l.account_id AND a.removed_at IS NULL
RETURNING a.id, a.name, a.role
"""

HOLDER_BY_HASH = """
UPDATE staff_tokens SET last_used_at = now()
WHERE token_hash = $1 AND revoked_at IS NULL
RETURNING id, name, role
"""


async def request_sign_in_link(
    db: asyncpg.Pool | asyncpg.Connection,
    secret_key: str,
    *,
    email: str,
    language: str,
    policy: SessionPolicy,
) -> None:
    """Queue a sign-in email if ``email`` is an active account's, and write
    ``console.sign_in_link``. Returns nothing either way: the caller cannot tell."""
    nonce = secrets.token_bytes(16)
    link_hash = secret_hash(sign_in_secret(secret_key, nonce))
    async with transaction(db) as conn:
        name = await conn.fetchval(
            CREATE_LINK, email.strip(), nonce, link_hash, policy.link_minutes, language
        )
        await audit.record(
            conn,
            name or ANONYMOUS,
            "console.sign_in_link",
            details={"outcome": "sent" if name else "no_account"},
        )


async def sign_in_with_link(
    db: asyncpg.Pool | asyncpg.Connection, secret: str, policy: SessionPolicy
) -> OpenedSession:
    """Use a link (once) and open a session. Raises SignInFailed."""
    async with transaction(db) as conn:
        row = await conn.fetchrow(USE_LINK, secret_hash(secret))
        if row is not None:
            staff = Staff(name=row["name"], role=Role(row["role"]))
            return await _open(conn, staff, policy, "link", account_id=row["id"])
    return await _failed(db, "link")


async def sign_in_with_token(
    db: asyncpg.Pool | asyncpg.Connection, token: str, policy: SessionPolicy
) -> OpenedSession:
    """Open a session for a staff token's holder. Raises SignInFailed."""
    async with transaction(db) as conn:
        row = await conn.fetchrow(HOLDER_BY_HASH, token_hash(token.strip()))
        if row is not None:
            staff = Staff(name=row["name"], role=Role(row["role"]))
            return await _open(conn, staff, policy, "token", token_id=row["id"])
    return await _failed(db, "token")


async def _failed(db: asyncpg.Pool | asyncpg.Connection, method: str) -> NoReturn:
    await audit.record(db, ANONYMOUS, "console.sign_in_failed", details={"method": method})
    raise SignInFailed


# -- sessions -----------------------------------------------------------------------------

OPEN_SESSION = """
INSERT INTO staff_sessions (session_hash, account_id, token_id, expires_at)
VALUES ($1, $2, $3, now() + make_interval(hours => $4))
"""

# A live session, touched; with its holder, unless the account was removed or the token
# revoked meanwhile.
TOUCH_SESSION = """
WITH live AS (
    UPDATE staff_sessions SET last_seen_at = now()
    WHERE session_hash = $1 AND ended_at IS NULL AND expires_at > now()
      AND last_seen_at > now() - make_interval(mins => $2)
    RETURNING account_id, token_id
)
SELECT coalesce(a.name, t.name) AS name, coalesce(a.role, t.role) AS role
FROM live
LEFT JOIN staff_accounts a ON a.id = live.account_id AND a.removed_at IS NULL
LEFT JOIN staff_tokens t ON t.id = live.token_id AND t.revoked_at IS NULL
"""

END_SESSION = """
UPDATE staff_sessions SET ended_at = now() WHERE session_hash = $1 AND ended_at IS NULL
RETURNING id
"""


async def _open(
    conn: asyncpg.Connection,
    staff: Staff,
    policy: SessionPolicy,
    method: str,
    *,
    account_id: int | None = None,
    token_id: int | None = None,
) -> OpenedSession:
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        OPEN_SESSION, secret_hash(secret), account_id, token_id, policy.session_hours
    )
    await audit.record(conn, staff.name, "console.sign_in", details={"method": method})
    return OpenedSession(secret, staff)


async def session_staff(
    db: asyncpg.Pool | asyncpg.Connection, secret: str, policy: SessionPolicy
) -> Staff | None:
    """Who holds this live session (and note that it was used now); None if it ended,
    expired, sat idle too long, or its holder lost access."""
    row = await db.fetchrow(TOUCH_SESSION, secret_hash(secret), policy.idle_minutes)
    if row is None or row["name"] is None:
        return None
    return Staff(name=row["name"], role=Role(row["role"]))


async def sign_out(db: asyncpg.Pool | asyncpg.Connection, secret: str, staff: Staff) -> None:
    """End the session and write ``console.sign_out``."""
    async with transaction(db) as conn:
        if await conn.fetchval(END_SESSION, secret_hash(secret)) is not None:
            await audit.record(conn, staff.name, "console.sign_out")


def session_lifetime(policy: SessionPolicy) -> timedelta:
    """How long the cookie may live: the absolute expiry."""
    return timedelta(hours=policy.session_hours)
