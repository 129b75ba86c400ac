"""What schemathesis needs to reach past 401 and 404, for tests/test_openapi.py and the
schemathesis step of .ci/run (``eval "$(python -m tests.support.schemathesis_data)"``): an
admin token, a partner key (granted the petition), an invalidation to undo (id 1), a
confirmation link, a receipt, handed to it as the environment variables
tests/schemathesis.toml names, and two translations to remove (fr, ar).

Run it after the petition refer-syria-to-icc exists, with the API's DATABASE_URL and
COUNTERSIGN_SECRET_KEY.
"""

from __future__ import annotations

import asyncio
import shlex

import asyncpg

from countersign_core.connections import create_pg_pool
from countersign_core.settings import load_settings
from countersign_domain import moderation
from countersign_domain.confirmation_tokens import ConfirmationRef, ConfirmationTokens
from countersign_domain.partners import create_partner, grant_petition
from countersign_domain.petitions import translate_petition
from countersign_domain.signature_log.receipts import Receipt
from countersign_domain.signatures import Hasher
from countersign_domain.staff import Role, create_token
from tests.support.factories import SLUG


async def create_data(pool: asyncpg.Pool, secret_key: str) -> dict[str, str]:
    petition_id: int = await pool.fetchval("SELECT id FROM petitions WHERE slug = $1", SLUG)
    staff_token = await create_token(
        pool, actor="schemathesis", name="schemathesis", role=Role.ADMIN
    )
    _, partner_key = await create_partner(
        pool, actor="test", name="Schemathesis", source_code="schemathesis", origins=[]
    )
    # tests/schemathesis.toml names it in the staff's grant paths.
    await grant_petition(pool, actor="schemathesis", source_code="schemathesis", slug=SLUG)
    invalidation = await moderation.apply_invalidation(
        pool,
        actor="schemathesis",
        petition_id=petition_id,
        criteria=moderation.Criteria(source="nobody"),
        reason="for schemathesis",
    )
    # tests/schemathesis.toml names it: the first of a new database.
    assert invalidation.id == 1, "run on a database without invalidations"
    for lang in ("fr", "ar"):  # tests/schemathesis.toml names them
        await translate_petition(
            pool, actor="schemathesis", slug=SLUG, lang=lang, title=f"Schemathesis ({lang})"
        )
    email = "schemathesis@example.org"
    signature_id: int = await pool.fetchval(
        """INSERT INTO signatures (petition_id, name, email, email_hash, country)
           VALUES ($1, 'Schemathesis', $2, $3, 'FR') RETURNING id""",
        petition_id,
        email,
        Hasher(secret_key).email(email),
    )
    token = ConfirmationTokens(secret_key, max_age_days=1).make(
        ConfirmationRef(signature_id, petition_id)
    )
    return {
        "SCHEMATHESIS_STAFF_TOKEN": staff_token,
        "SCHEMATHESIS_PARTNER_KEY": partner_key,
        "SCHEMATHESIS_CONFIRMATION_TOKEN": token,
        "SCHEMATHESIS_RECEIPT": Receipt(
            SLUG,
            signature_id,
            await pool.fetchval(
                "SELECT receipt_secret FROM signatures WHERE id = $1", signature_id
            ),
        ).code,
    }


async def _main() -> None:
    settings = load_settings()
    database_url, _ = settings.require_servers()
    pool = await create_pg_pool(database_url)
    try:
        found = await create_data(pool, settings.require_secret_key())
    finally:
        await pool.close()
    for name, value in found.items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    asyncio.run(_main())
