"""Heartbeats: each counter worker and mail sender says it is alive, with a TTL.

Each process keeps one row in ``process_heartbeats`` (sql/010_heartbeats.sql), written
from its work loop every ``interval`` seconds and valid for three of them, the way arq's
health key works. A row past its ``expires_at`` is a process that died or wedged without
a word: `countersign status` and the API's metrics show it as stale. A process that stops
cleanly deletes its row; stale rows are forgotten a day after they lapse.

Postgres rather than Redis: the mail sender has no Redis, every process and the status
readers share Postgres, and a lapsed row stays readable (a Redis key would vanish with its
TTL, and with it the news that a process died).

The same object answers the process's probes (served beside its metrics):
``alive`` while its event loop turns, ``ready`` while its heartbeats get written.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from contextlib import AbstractAsyncContextManager, suppress
from uuid import uuid4

import asyncpg

from countersign_core.runtime import in_background

# Misses tolerated before a process counts as stale.
BEATS_PER_TTL = 3
# The event loop must turn at least this often (seconds) for the process to be alive.
LOOP_STALL_LIMIT = 10.0

BEAT = """
WITH forgotten AS (
    DELETE FROM process_heartbeats
    WHERE expires_at < now() - interval '1 day' AND process <> $1
)
INSERT INTO process_heartbeats (process, kind, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (process) DO UPDATE SET last_seen = now(), expires_at = EXCLUDED.expires_at
"""

FORGET = "DELETE FROM process_heartbeats WHERE process = $1"


def process_name() -> str:
    """Unique per process start: host (the pod's name in Kubernetes), pid, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


class Heartbeat:
    def __init__(self, kind: str, process: str, *, interval: float) -> None:
        self.kind = kind
        self.process = process
        self.interval = interval
        self.ttl = BEATS_PER_TTL * interval
        self._next_beat = 0.0
        self._last_beat: float | None = None
        self._last_turn = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() >= self._next_beat

    async def beat(self, pool: asyncpg.Pool) -> None:
        """Write the heartbeat now (raises what the database raises)."""
        await pool.execute(BEAT, self.process, self.kind, self.ttl)
        self._last_beat = time.monotonic()
        self._next_beat = self._last_beat + self.interval

    async def beat_if_due(self, pool: asyncpg.Pool) -> None:
        if self.due():
            await self.beat(pool)

    async def forget(self, pool: asyncpg.Pool) -> None:
        """On a clean stop: the row goes, so status does not report a death."""
        with suppress(Exception):  # best effort: otherwise it lapses like a crash's
            await asyncio.wait_for(pool.execute(FORGET, self.process), 2)

    # -- probes (called from the metrics server's thread: reads of floats only) -------------

    def alive(self) -> bool:
        return time.monotonic() - self._last_turn < LOOP_STALL_LIMIT

    def ready(self) -> bool:
        return self._last_beat is not None and time.monotonic() - self._last_beat < self.ttl

    def watching_the_loop(self) -> AbstractAsyncContextManager[None]:
        """While the block runs, note every second that the event loop still turns."""

        async def turn() -> None:
            while True:
                self._last_turn = time.monotonic()
                await asyncio.sleep(1)

        return in_background(turn())
