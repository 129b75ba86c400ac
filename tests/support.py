"""Helpers the tests share: waiting on conditions, exactness checks, worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import asyncpg
import psutil
from redis.asyncio import Redis

from counter_worker.counts import read_counts
from counter_worker.keys import KeyLayout

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.05
) -> T:
    """Wait until ``check`` returns a truthy value; fail with its last answer at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class Tally:
    total: int
    countries: dict[str, int]
    sources: dict[str, int]


async def postgres_tally(pool: asyncpg.Pool, petition_id: int) -> Tally:
    """The truth: a GROUP BY over counted signatures."""
    rows = await pool.fetch(
        """SELECT country, coalesce(source, '') AS source, count(*) AS n FROM signatures
           WHERE petition_id = $1 AND counted GROUP BY 1, 2""",
        petition_id,
    )
    countries: dict[str, int] = {}
    sources: dict[str, int] = {}
    for row in rows:
        countries[row["country"]] = countries.get(row["country"], 0) + row["n"]
        sources[row["source"]] = sources.get(row["source"], 0) + row["n"]
    return Tally(sum(countries.values()), countries, sources)


async def redis_tally(redis: Redis, layout: KeyLayout, petition_id: int) -> Tally | None:
    counts = await read_counts(redis, layout, petition_id)
    if counts is None:
        return None
    return Tally(counts.total, counts.countries, counts.sources)


async def converged(
    pool: asyncpg.Pool, redis: Redis, layout: KeyLayout, petition_id: int
) -> tuple[Tally, Tally | None] | None:
    """Redis equals Postgres and no event is waiting; else None (for ``eventually``)."""
    pending = await pool.fetchval("SELECT count(*) FROM counter_events")
    truth = await postgres_tally(pool, petition_id)
    live = await redis_tally(redis, layout, petition_id)
    if pending == 0 and live == truth:
        return truth, live
    return None


async def assert_converges(
    pool: asyncpg.Pool, redis: Redis, layout: KeyLayout, petition_id: int, timeout: float = 30
) -> Tally:
    try:
        found = await eventually(
            lambda: converged(pool, redis, layout, petition_id), timeout=timeout
        )
    except AssertionError:
        truth = await postgres_tally(pool, petition_id)
        live = await redis_tally(redis, layout, petition_id)
        pending = await pool.fetchval("SELECT count(*) FROM counter_events")
        raise AssertionError(
            f"Redis never equalled Postgres: postgres={truth} redis={live} pending={pending}"
        ) from None
    assert found is not None
    return found[0]


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


@dataclass
class WorkerProcess:
    """A real worker process (``python -m counter_worker`` or ``mail_sender``), for tests
    that kill it."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_stopped(self) -> bool:
        try:
            return bool(psutil.Process(self.pid).status() == psutil.STATUS_STOPPED)
        except psutil.NoSuchProcess:
            return False

    async def wait_stopped(self, timeout: float = 20) -> None:
        async def stopped() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            return self.is_stopped()

        await eventually(stopped, timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)


def spawn_worker(
    env: dict[str, str], log_path: Path, *, module: str = "counter_worker", **overrides: str
) -> WorkerProcess:
    """A real worker process: the counter worker, or another (``module="mail_sender"``)."""
    with log_path.open("ab") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, **env, **overrides},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return WorkerProcess(proc, log_path)


@dataclass
class ApiProcess:
    """A real ``countersign api`` process (with its per-core children, if any)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 60) -> None:
        async def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the API exited early:\n{self.log()}")
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"{self.url}/readyz") as response,
                ):
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, timeout=timeout, interval=0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def spawn_api(env: dict[str, str], log_path: Path, port: int, *args: str) -> ApiProcess:
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "countersign", "api", "--port", str(port), *args],
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return ApiProcess(proc, log_path, f"http://127.0.0.1:{port}")
