"""What the console's dashboard shows of a petition, and each partner's figures.

Read from Postgres, like the summary it builds on: staff see the rows themselves,
including what the public counts leave out (pending confirmations, suspects, emails).
Times are grouped in UTC, like every date the exports and the delivery page show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from countersign_domain.summary import DayFigure, Summary, summarise

# Hours the "recent" timeline covers.
RECENT_HOURS = 72

STATES = """
SELECT count(*) FILTER (WHERE confirmed_at IS NOT NULL AND live) AS confirmed,
       count(*) FILTER (WHERE confirmed_at IS NULL AND live) AS pending,
       count(*) FILTER (WHERE suspect_reason IS NOT NULL AND live) AS suspects
FROM (
    SELECT confirmed_at, suspect_reason, invalidated_at IS NULL AND erased_at IS NULL AS live
    FROM signatures WHERE petition_id = $1
) AS s
"""

# Counted signatures per UTC hour over the last $2 hours, every hour present.
HOURS = """
WITH bounds AS (
    SELECT date_trunc('hour', now() AT TIME ZONE 'UTC') AS last_hour
), counts AS (
    SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AS hour, count(*) AS n
    FROM signatures, bounds
    WHERE petition_id = $1 AND counted
      AND created_at >= (bounds.last_hour - make_interval(hours => $2 - 1)) AT TIME ZONE 'UTC'
    GROUP BY 1
)
SELECT h.hour, coalesce(c.n, 0) AS n
FROM bounds,
     generate_series(bounds.last_hour - make_interval(hours => $2 - 1), bounds.last_hour,
                     interval '1 hour') AS h(hour)
LEFT JOIN counts c ON c.hour = h.hour
ORDER BY h.hour
"""

EMAILS = """
SELECT count(*) FILTER (WHERE j.sent_at IS NULL AND j.failed_at IS NULL) AS queued,
       count(*) FILTER (WHERE j.sent_at IS NOT NULL) AS sent,
       count(*) FILTER (WHERE j.failed_at IS NOT NULL) AS failed
FROM email_jobs j JOIN signatures s ON s.id = j.signature_id
WHERE s.petition_id = $1
"""

PARTNER_FIGURES = """
SELECT pa.source_code, count(s.id) FILTER (WHERE s.counted) AS counted,
       count(DISTINCT s.petition_id) FILTER (WHERE s.counted) AS petitions
FROM partners pa LEFT JOIN signatures s ON s.source = pa.source_code
GROUP BY pa.source_code
"""


@dataclass(frozen=True)
class HourFigure:
    hour: datetime  # UTC
    count: int


@dataclass(frozen=True)
class EmailFigures:
    queued: int
    sent: int
    failed: int


@dataclass(frozen=True)
class Dashboard:
    summary: Summary
    confirmed: int  # addresses confirmed (counted or held back as suspects)
    pending: int  # waiting for their confirmation
    suspects: int  # waiting for review
    hours: list[HourFigure]  # the last RECENT_HOURS, oldest first
    days: list[DayFigure]  # from the first signature's day to today, oldest first
    emails: EmailFigures


@dataclass(frozen=True)
class PartnerFigures:
    counted: int
    petitions: int


async def petition_dashboard(
    conn: asyncpg.Pool | asyncpg.Connection, petition_id: int
) -> Dashboard:
    summary = await summarise(conn, petition_id)
    states = await conn.fetchrow(STATES, petition_id)
    hours = await conn.fetch(HOURS, petition_id, RECENT_HOURS)
    emails = await conn.fetchrow(EMAILS, petition_id)
    return Dashboard(
        summary=summary,
        confirmed=states["confirmed"],
        pending=states["pending"],
        suspects=states["suspects"],
        hours=[HourFigure(row["hour"].replace(tzinfo=UTC), row["n"]) for row in hours],
        days=every_day(summary.days, datetime.now(UTC).date()),
        emails=EmailFigures(emails["queued"], emails["sent"], emails["failed"]),
    )


def every_day(days: list[DayFigure], today: date) -> list[DayFigure]:
    """The days with signatures, and the days between them (and up to today) at zero."""
    if not days:
        return []
    by_date = {figure.date: figure.count for figure in days}
    first = days[0].date
    return [
        DayFigure(first + timedelta(n), by_date.get(first + timedelta(n), 0))
        for n in range((max(today, days[-1].date) - first).days + 1)
    ]


async def partner_figures(conn: asyncpg.Pool | asyncpg.Connection) -> dict[str, PartnerFigures]:
    """Counted signatures each partner's source code brought, on how many petitions."""
    return {
        row["source_code"]: PartnerFigures(row["counted"], row["petitions"])
        for row in await conn.fetch(PARTNER_FIGURES)
    }
