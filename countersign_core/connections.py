"""Connections to Postgres and Redis, configured the same way for every process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import redis.exceptions
from redis.asyncio import Redis

# Errors that mean "a server is unreachable or restarting": callers answer 503 or retry
# with back-off; anything else is a bug and is reported as one.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
    # What asyncpg raises when a connection is cut mid-operation, e.g. while resetting it
    # for the pool during a server's fast shutdown (seen by bench/chaos.py).
    asyncpg.InternalClientError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)


T = TypeVar("T")


async def within(timeout: float | None, operation: Awaitable[T]) -> T:
    """The operation's result, or TimeoutError once ``timeout`` seconds have passed, its
    clean-up included.

    ``asyncio.timeout`` would wait for the cancelled operation to finish: asyncpg then
    asks the server to cancel the query and the pool waits for that answer before taking
    the connection back, which a hanging server never gives (seconds go by, whatever the
    timeout said). Here the operation is cancelled and left to finish its clean-up on its
    own; whatever it ends with is retrieved, so nothing is logged as never retrieved.
    """
    task = asyncio.ensure_future(operation)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:  # the caller went away: so does the operation
        task.cancel()
        task.add_done_callback(retrieve_outcome)
        raise
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(retrieve_outcome)
    raise TimeoutError


def retrieve_outcome(future: asyncio.Future[Any]) -> None:
    """A done callback for a future nobody may await any more: its exception counts as
    retrieved (asyncio would log it as never retrieved otherwise)."""
    if not future.cancelled():
        future.exception()


async def create_pg_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 8, application_name: str = "countersign"
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # A server that accepts connections but never answers (frozen, or a black-holed
        # address) holds a new connection no longer than this; requests are bounded more
        # tightly by COUNTERSIGN_BACKEND_TIMEOUT.
        timeout=5,
        command_timeout=30,
        server_settings={"application_name": application_name},
    )


def create_redis(url: str, *, client_name: str | None = None) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        client_name=client_name,
    )


@asynccontextmanager
async def transaction(db: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction: ``db`` itself, or one taken from the pool ``db``.
    Inside a caller's transaction it is a savepoint, so callers may group several changes."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


def rows_affected(status: str) -> int:
    """Rows an INSERT, UPDATE, DELETE or COPY touched, from its status tag ("UPDATE 42")."""
    return int(status.split()[-1])
