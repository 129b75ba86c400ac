"""What an operator asks first: are the workers and senders alive, and is work piling up?

Read by `countersign status` and, at every scrape, by the API's metrics server
(``StatusCollector``), so both always say the same thing, straight from Postgres.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from countersign_core.connections import connect_pg

log = logging.getLogger("countersign_core.status")

PROCESS_KINDS = ("counter_worker", "mail_sender")

PROCESSES = """
SELECT process, kind, started_at, last_seen,
       extract(epoch FROM clock_timestamp() - last_seen)::float8 AS age,
       expires_at < clock_timestamp() AS stale
FROM process_heartbeats
ORDER BY kind, started_at, process
"""

# Every event not yet acknowledged, claimed or not: what the counts still lack.
COUNTER_EVENTS = """
SELECT count(*) AS waiting,
       extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS oldest_age
FROM counter_events
"""

# Jobs that may be sent now (a claimed job is due again only when its lease ends; a
# deferred one when its retry comes; a held one, a suspect's, once staff release it), and
# for how long the longest-waiting one has been.
EMAILS_DUE = """
SELECT count(*) AS due,
       extract(epoch FROM clock_timestamp() - min(next_attempt_at))::float8 AS oldest_age
FROM email_jobs
WHERE sent_at IS NULL AND failed_at IS NULL AND NOT held
  AND next_attempt_at <= clock_timestamp()
"""


@dataclass(frozen=True)
class ProcessBeat:
    process: str
    kind: str
    started_at: datetime
    last_seen: datetime
    age: float  # seconds since its last heartbeat
    stale: bool  # its heartbeat lapsed: dead or wedged


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest_age: float | None  # seconds; None when there is nothing


@dataclass(frozen=True)
class Status:
    processes: list[ProcessBeat]
    counter_events: Backlog
    emails_due: Backlog


async def _backlog(conn: asyncpg.Pool | asyncpg.Connection, query: str) -> Backlog:
    row = await conn.fetchrow(query)
    assert row is not None
    return Backlog(row[0], row[1])


async def emails_due(conn: asyncpg.Pool | asyncpg.Connection) -> Backlog:
    return await _backlog(conn, EMAILS_DUE)


async def read_status(conn: asyncpg.Pool | asyncpg.Connection) -> Status:
    processes = [ProcessBeat(**row) for row in await conn.fetch(PROCESSES)]
    return Status(processes, await _backlog(conn, COUNTER_EVENTS), await emails_due(conn))


class StatusCollector(Collector):
    """The status as Prometheus gauges, read from Postgres at each scrape.

    Computed where the scrape is answered (the metrics server's thread, in the parent of
    a multi-process API), on a connection of its own: nothing is shared with the
    request-serving processes, and multiprocess mode, which sums per-process files, is
    not involved. Each API instance reports the same figures; aggregate them with max().
    """

    def __init__(
        self, database_url: str, *, timeout: float = 5.0, transaction_pooler: bool = False
    ) -> None:
        self.database_url = database_url
        self.timeout = timeout
        self.transaction_pooler = transaction_pooler

    def describe(self) -> list[GaugeMetricFamily]:
        return self._families(None)  # names only: registering must not query Postgres

    def collect(self) -> list[GaugeMetricFamily]:
        try:
            status = asyncio.run(self._read())
        except Exception as exc:  # a scrape must still answer: say the status is unknown
            log.warning("status unavailable for metrics (%s)", type(exc).__name__)
            unreadable = _readable()
            unreadable.add_metric([], 0)
            return [unreadable]
        return self._families(status)

    async def _read(self) -> Status:
        conn = await connect_pg(
            self.database_url, timeout=self.timeout, transaction_pooler=self.transaction_pooler
        )
        try:
            return await read_status(conn)
        finally:
            await conn.close()

    @staticmethod
    def _families(status: Status | None) -> list[GaugeMetricFamily]:
        readable = _readable()
        processes = GaugeMetricFamily(
            "countersign_processes",
            "Counter workers and mail senders with a heartbeat row, alive or stale.",
            labels=["kind", "state"],
        )
        ages = GaugeMetricFamily(
            "countersign_heartbeat_age_seconds",
            "Seconds since each process's last heartbeat.",
            labels=["kind", "process"],
        )
        events = GaugeMetricFamily(
            "countersign_counter_events_waiting",
            "Counter events committed in Postgres and not yet acknowledged by a worker.",
        )
        events_age = GaugeMetricFamily(
            "countersign_counter_events_oldest_age_seconds",
            "Age of the oldest counter event waiting (0 when none).",
        )
        mail = GaugeMetricFamily("countersign_emails_due", "Email jobs due to be sent now.")
        mail_age = GaugeMetricFamily(
            "countersign_emails_oldest_due_age_seconds",
            "How long the longest-waiting due email job has been due (0 when none).",
        )
        if status is not None:
            readable.add_metric([], 1)
            for kind in PROCESS_KINDS:
                mine = [p for p in status.processes if p.kind == kind]
                processes.add_metric([kind, "alive"], sum(not p.stale for p in mine))
                processes.add_metric([kind, "stale"], sum(p.stale for p in mine))
            for beat in status.processes:
                ages.add_metric([beat.kind, beat.process], beat.age)
            events.add_metric([], status.counter_events.count)
            events_age.add_metric([], status.counter_events.oldest_age or 0.0)
            mail.add_metric([], status.emails_due.count)
            mail_age.add_metric([], status.emails_due.oldest_age or 0.0)
        return [readable, processes, ages, events, events_age, mail, mail_age]


def _readable() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "countersign_status_readable", "1 if the status could be read from Postgres, else 0."
    )
