"""Test data: petitions, signatures, staff tokens and signing bodies.

Partners come from the domain's own ``countersign_domain.partners.create_partner``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from countersign_domain.signatures import Hasher
from countersign_domain.staff import INSERT_STAFF, Role, new_token, token_hash
from tests.support.values import TEST_SECRET

SLUG = "refer-syria-to-icc"  # the petition of the ``petition_id`` fixture

# Hashes as the API's own (the tests' settings carry TEST_SECRET).
hasher = Hasher(TEST_SECRET)


# -- petitions ------------------------------------------------------------------------------


async def insert_open_petition(pool: asyncpg.Pool) -> int:
    """An open petition whose signatures count at once (no email confirmation)."""
    petition: int = await pool.fetchval(
        """INSERT INTO petitions (slug, title, body, target, goal, status, require_confirmation)
           VALUES ('refer-syria-to-icc', 'Refer Syria to the ICC', 'Text', 'Russia', 100000,
                   'open', false) RETURNING id"""
    )
    return petition


async def insert_confirming_petition(pool: asyncpg.Pool) -> int:
    """An open petition whose signatures count only once confirmed by email."""
    petition: int = await pool.fetchval(
        """INSERT INTO petitions (slug, title, status, require_confirmation)
           VALUES ('free-the-detainees', 'Free the detainees', 'open', true) RETURNING id"""
    )
    return petition


# -- signatures -----------------------------------------------------------------------------


def signer(**overrides: Any) -> dict[str, Any]:
    """A signing request's body."""
    body: dict[str, Any] = {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"}
    body.update(overrides)
    return body


async def signature_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch("SELECT * FROM signatures ORDER BY id")
    return rows


async def add_signatures(
    pool: asyncpg.Pool,
    petition_id: int,
    n: int,
    *,
    countries: tuple[str, ...] = ("SY", "FR", "RU", "US", "DE"),
    sources: tuple[str | None, ...] = (None, "partner-a", "newsroom"),
) -> None:
    """Insert n counted signatures in one statement, spread over countries and sources."""
    await pool.execute(
        """INSERT INTO signatures (petition_id, name, email, email_hash, country, source)
           SELECT $1, 'Test Signer', 'signer' || g || '@example.org',
                  sha256(gen_random_uuid()::text::bytea),
                  ($3::text[])[1 + g % array_length($3::text[], 1)],
                  ($4::text[])[1 + g % array_length($4::text[], 1)]
           FROM generate_series(1, $2) AS g""",
        petition_id,
        n,
        list(countries),
        list(sources),
    )


async def insert_signature(
    pool: asyncpg.Pool,
    hasher: Hasher,
    petition_id: int,
    *,
    name: str = "Test Signer",
    email: str,
    country: str = "SY",
    source: str | None = None,
    postal_code: str | None = None,
    ip: str | None = None,
    created_at: datetime | None = None,
    consent_updates: bool = False,
) -> int:
    """One signature with exactly these fields, hashed as the sign endpoint hashes them."""
    signature_id: int = await pool.fetchval(
        """INSERT INTO signatures (petition_id, name, email, email_hash, country, source,
                                   postal_code, ip_hash, created_at, consent_updates)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()), $10) RETURNING id""",
        petition_id,
        name,
        email,
        hasher.email(email),
        country,
        source,
        postal_code,
        hasher.ip(ip) if ip else None,
        created_at,
        consent_updates,
    )
    return signature_id


# -- staff ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffTokens:
    admin: str
    exporter: str


async def create_staff_tokens(pool: asyncpg.Pool) -> StaffTokens:
    """An admin token and an exporter token, there before the test begins (inserted
    directly, so they are not in its audit log)."""

    async def seed(name: str, role: Role) -> str:
        token = new_token()
        await pool.execute(INSERT_STAFF, name, role.value, token_hash(token))
        return token

    return StaffTokens(
        admin=await seed("admin-test", Role.ADMIN),
        exporter=await seed("exporter-test", Role.EXPORTER),
    )
