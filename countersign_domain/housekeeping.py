"""Housekeeping: what the services do on their own, on a timer, and operators by hand.

The counter worker closes petitions whose close date has passed (``close_expired``);
the mail senders, and ``countersign purge-pending``, delete signatures (and partners'
submissions) nobody confirmed in time (``purge_unconfirmed``).
"""

from __future__ import annotations

import asyncpg

from countersign_core.connections import rows_affected

# Petitions whose close date has passed. Reads already treat them as closed; this makes
# the row say so too (a trigger records closed_at as the close date).
CLOSE_EXPIRED_PETITIONS = """
UPDATE petitions SET status = 'closed' WHERE status = 'open' AND closes_at <= now()
RETURNING id
"""

# Pending signatures whose last sign of life (signing, a partner submitting it, or
# asking for an email) is older than $1 days; $2 at a time, so that no statement holds
# many locks for long. They never counted, so the delete writes no counter event; their
# email jobs and submissions go with them.
PURGE_UNCONFIRMED = """
DELETE FROM signatures WHERE id IN (
    SELECT s.id FROM signatures s
    WHERE s.confirmed_at IS NULL AND s.created_at < now() - make_interval(days => $1)
      AND NOT EXISTS (
          SELECT 1 FROM email_jobs j
          WHERE j.signature_id = s.id AND j.created_at >= now() - make_interval(days => $1)
      )
      AND NOT EXISTS (
          SELECT 1 FROM partner_submissions ps
          WHERE ps.signature_id = s.id AND ps.created_at >= now() - make_interval(days => $1)
      )
    ORDER BY s.created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
"""

# Partners' submissions nobody confirmed in time, by the same rule, whether or not their
# signature stays (it may have signed before, and be confirmed): a partner's pending
# figure drops alike either way.
PURGE_UNCONFIRMED_SUBMISSIONS = """
DELETE FROM partner_submissions WHERE id IN (
    SELECT ps.id FROM partner_submissions ps
    WHERE ps.confirmed_at IS NULL AND ps.created_at < now() - make_interval(days => $1)
      AND NOT EXISTS (
          SELECT 1 FROM email_jobs j
          WHERE j.signature_id = ps.signature_id
            AND j.created_at >= now() - make_interval(days => $1)
      )
    ORDER BY ps.created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
"""

PURGE_BATCH = 1000


async def close_expired(conn: asyncpg.Pool | asyncpg.Connection) -> list[int]:
    """Close the open petitions whose close date has passed; returns their ids."""
    return [row["id"] for row in await conn.fetch(CLOSE_EXPIRED_PETITIONS)]


async def purge_unconfirmed(conn: asyncpg.Pool | asyncpg.Connection, days: int) -> int:
    """Delete pending signatures (and partners' submissions) unconfirmed for ``days``;
    returns how many signatures."""
    await _purge(conn, PURGE_UNCONFIRMED_SUBMISSIONS, days)
    return await _purge(conn, PURGE_UNCONFIRMED, days)


async def _purge(conn: asyncpg.Pool | asyncpg.Connection, query: str, days: int) -> int:
    purged = 0
    while True:
        deleted = rows_affected(await conn.execute(query, days, PURGE_BATCH))
        purged += deleted
        if deleted < PURGE_BATCH:
            return purged
