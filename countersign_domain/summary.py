"""A petition's figures for staff: totals by country, source and day, in one pass.

Read from Postgres, never from Redis: this is what the delivery page and the press
figures rest on, so it counts the rows themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

# grouping() has a bit set for each column a row is *not* grouped by.
BY_COUNTRY, BY_SOURCE, BY_DAY, OVERALL = 0b011, 0b101, 0b110, 0b111

# One pass over the petition's signatures answers every figure of the summary.
SUMMARY = """
WITH grouped AS (
    SELECT grouping(country, source, day) AS grouping_set, country, source, day,
           count(*) FILTER (WHERE counted) AS counted,
           count(*) FILTER (WHERE invalidated_at IS NOT NULL) AS invalidated,
           count(*) FILTER (WHERE erased_at IS NOT NULL) AS erased,
           count(*) FILTER (WHERE counted AND consent_updates) AS consent_updates,
           min(created_at) FILTER (WHERE counted) AS first_signed_at,
           max(created_at) FILTER (WHERE counted) AS last_signed_at
    FROM (
        SELECT country::text AS country, source, (created_at AT TIME ZONE 'UTC')::date AS day,
               created_at, counted, invalidated_at, erased_at, consent_updates
        FROM signatures WHERE petition_id = $1
    ) AS s
    GROUP BY GROUPING SETS ((country), (source), (day), ())
)
SELECT g.grouping_set, g.country, c.name AS country_name, g.source,
       countersign_csv_safe(g.source) AS source_cell, g.day, g.counted, g.invalidated,
       g.erased, g.consent_updates, g.first_signed_at, g.last_signed_at
FROM grouped g LEFT JOIN countries c ON c.code = g.country
WHERE g.counted > 0 OR g.grouping_set = 7
ORDER BY g.counted DESC, g.country, g.source, g.day
"""


@dataclass(frozen=True)
class CountryFigure:
    code: str
    name: str
    count: int


# How signatures without a source code are named: a row of their own, so that the sources
# add up to the total. No source code can be spelled so (patterns.SOURCE_CODE).
NO_SOURCE = "(none)"


@dataclass(frozen=True)
class SourceFigure:
    source: str | None  # None: signed without a source code
    cell: str | None  # the same, safe for a spreadsheet cell
    count: int

    @property
    def label(self) -> str:
        """The source code, or NO_SOURCE."""
        return self.source if self.source is not None else NO_SOURCE


@dataclass(frozen=True)
class DayFigure:
    date: date
    count: int


@dataclass(frozen=True)
class Summary:
    total: int
    countries: list[CountryFigure]  # largest first
    sources: list[SourceFigure]  # largest first; they add up to the total
    days: list[DayFigure]  # oldest first
    invalidated: int
    erased: int
    # Counted signers who agreed to hear from the campaign (for staff only: never public).
    consent_updates: int
    first_signed_at: datetime | None
    last_signed_at: datetime | None


async def summarise(conn: asyncpg.Pool | asyncpg.Connection, petition_id: int) -> Summary:
    rows = await conn.fetch(SUMMARY, petition_id)
    [overall] = [row for row in rows if row["grouping_set"] == OVERALL]
    return Summary(
        total=overall["counted"],
        countries=[
            CountryFigure(row["country"], row["country_name"] or row["country"], row["counted"])
            for row in rows
            if row["grouping_set"] == BY_COUNTRY
        ],
        sources=[
            SourceFigure(row["source"], row["source_cell"], row["counted"])
            for row in rows
            if row["grouping_set"] == BY_SOURCE
        ],
        days=sorted(
            (
                DayFigure(row["day"], row["counted"])
                for row in rows
                if row["grouping_set"] == BY_DAY
            ),
            key=lambda figure: figure.date,
        ),
        invalidated=overall["invalidated"],
        erased=overall["erased"],
        consent_updates=overall["consent_updates"],
        first_signed_at=overall["first_signed_at"],
        last_signed_at=overall["last_signed_at"],
    )
