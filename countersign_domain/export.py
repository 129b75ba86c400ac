"""Signature exports for delivery: one COPY from Postgres, streamed as it comes.

Rows never pass through Python one by one: Postgres writes the CSV (quoting, UTF-8,
formula neutralisation in ``countersign_csv_safe``) and asyncpg hands its chunks to a
sink, which awaits the client (or the disk) before the next chunk is read. A slow
reader therefore slows Postgres down instead of filling memory, and a reader that goes
away makes the sink fail, which cancels the COPY and frees the connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from countersign_core.connections import rows_affected
from countersign_domain import audit, patterns
from countersign_domain.errors import ValidationFailed

# Excel reads a CSV as UTF-8 only when it starts with a byte-order mark; without one,
# Arabic, Russian or Chinese names turn into mojibake on the diplomats' machines.
UTF8_BOM = b"\xef\xbb\xbf"

Sink = Callable[[bytes], Awaitable[Any]]

# The rows an export selects; shared by the export and its count (the CLI's ETA).
_FROM_COUNTED = """
FROM signatures s LEFT JOIN countries c ON c.code = s.country
WHERE s.petition_id = $1 AND s.counted
  AND ($2::text IS NULL OR s.country = $2)
  AND ($3::text IS NULL OR s.source = $3)
  AND ($4::timestamptz IS NULL OR s.created_at >= $4)
  AND ($5::timestamptz IS NULL OR s.created_at < $5)
  AND ($6::boolean IS NULL OR s.consent_updates = $6)
"""

_COLUMNS = """
SELECT to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS signed_at,
       countersign_csv_safe(s.name) AS name,
       s.country AS country_code,
       countersign_csv_safe(c.name) AS country_name,
       countersign_csv_safe(s.postal_code) AS postal_code,
       countersign_csv_safe(s.source) AS source,
       CASE WHEN s.consent_updates THEN 'yes' ELSE 'no' END AS consent_updates
"""

_ORDER = "ORDER BY s.created_at, s.id"

# Built from the constant fragments above only; values always travel as parameters.
EXPORT_QUERY = _COLUMNS + _FROM_COUNTED + _ORDER
EXPORT_QUERY_WITH_EMAIL = (
    _COLUMNS + ", countersign_csv_safe(s.email) AS email" + _FROM_COUNTED + _ORDER
)
COUNT_QUERY = "SELECT count(*)" + _FROM_COUNTED


@dataclass(frozen=True)
class ExportFilters:
    country: str | None = None
    source: str | None = None
    signed_after: datetime | None = None  # inclusive
    signed_before: datetime | None = None  # exclusive
    # Only those who agreed (True) to hear from the campaign, or who did not (False).
    consent: bool | None = None

    def __post_init__(self) -> None:
        refused: dict[str, list[str]] = {}
        if self.country is not None and self.country not in patterns.COUNTRY_CODES:
            refused["country"] = ["Not an ISO 3166-1 alpha-2 country code (in capitals)."]
        if self.source is not None and not re.fullmatch(patterns.SOURCE_CODE, self.source):
            refused["source"] = ["Use 1-64 of a-z, 0-9, '_' and '-'."]
        if refused:
            raise ValidationFailed(fields=refused)

    def args(self, petition_id: int) -> tuple[Any, ...]:
        return (
            petition_id,
            self.country,
            self.source,
            self.signed_after,
            self.signed_before,
            self.consent,
        )

    def describe(self) -> dict[str, str]:
        return audit.describe(self)


def export_query(include_email: bool) -> str:
    return EXPORT_QUERY_WITH_EMAIL if include_email else EXPORT_QUERY


async def count_rows(
    conn: asyncpg.Pool | asyncpg.Connection, petition_id: int, filters: ExportFilters
) -> int:
    rows: int = await conn.fetchval(COUNT_QUERY, *filters.args(petition_id))
    return rows


async def copy_rows(
    conn: asyncpg.Connection,
    petition_id: int,
    filters: ExportFilters,
    *,
    include_email: bool,
    sink: Sink,
    timeout: float,
) -> int:
    """COPY the rows as CSV with a header into ``sink``; returns how many rows."""
    status: str = await conn.copy_from_query(
        export_query(include_email),
        *filters.args(petition_id),
        output=sink,
        format="csv",
        header=True,
        encoding="UTF8",
        timeout=timeout,
    )
    return rows_affected(status)


async def audited_export(
    pool: asyncpg.Pool,
    *,
    actor: str,
    via: str,
    petition_id: int,
    filters: ExportFilters,
    include_email: bool,
    sink: Sink,
    timeout: float,
) -> int:
    """Write the export to ``sink`` between two audit writes: one before the first byte
    (so it is on record even if this process dies) and its outcome and row count after.
    Returns the rows written. A download that stops early (the sink raises
    ConnectionResetError, or the task is cancelled) is recorded as ``interrupted``."""
    entry = await audit.record(
        pool,
        actor,
        "export",
        petition_id=petition_id,
        details={
            "via": via,
            "format": "csv",
            "filters": filters.describe(),
            "include_email": include_email,
        },
    )
    rows: int | None = None
    outcome = "failed"
    try:
        await sink(UTF8_BOM)
        async with pool.acquire() as conn:
            try:
                rows = await copy_rows(
                    conn,
                    petition_id,
                    filters,
                    include_email=include_email,
                    sink=sink,
                    timeout=timeout,
                )
            except BaseException:
                # Stopped mid-COPY: asyncpg has asked Postgres to cancel it, but the
                # connection is still inside the COPY protocol. Closing it ends the COPY
                # for certain; the pool opens a fresh one when needed.
                conn.terminate()
                raise
        outcome = "completed"
        return rows
    except (ConnectionResetError, asyncio.CancelledError):
        outcome = "interrupted"
        raise
    finally:
        await audit.complete(pool, entry, rows, {"outcome": outcome})
