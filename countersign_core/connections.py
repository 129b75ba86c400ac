"""Connections to Postgres and Redis, configured the same way for every process."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

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


# -- failures in words ------------------------------------------------------------------------

NO_TABLES_YET = "the database has no tables yet: run `countersign migrate`"


def where_is(url: str) -> str:
    """The server a URL names, for a message: host and port, or the socket's folder; never
    the user or the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    host = parts.hostname or socket_dir or "localhost"
    return f"{host}:{parts.port}" if parts.port else host


def connection_trouble(
    exc: BaseException, database_url: str, redis_url: str | None = None
) -> str | None:
    """What a failure to reach Postgres (or Redis) means, in one line; None if ``exc`` is
    no such failure.

    The server's own words where it said something (``database "x" does not exist``,
    ``password authentication failed for user "y"``), else what the client saw, with
    where it looked."""
    if isinstance(exc, redis.exceptions.RedisError):
        return _redis_trouble(exc, where_is(redis_url)) if redis_url else None
    where = where_is(database_url)
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to the database at {where}: connection refused (is it running?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot connect to the database: the host of {where} is unknown"
    if isinstance(exc, FileNotFoundError):
        return f"cannot connect to the database: no server socket in {where}"
    if isinstance(exc, TimeoutError):
        return f"the database at {where} did not answer in time"
    if isinstance(exc, OSError):
        return f"cannot connect to the database at {where}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return f"lost the connection to the database at {where}: {exc}"
    return None


def _redis_trouble(exc: redis.exceptions.RedisError, where: str) -> str:
    if isinstance(exc, redis.exceptions.TimeoutError):
        return f"Redis at {where} did not answer in time"
    if isinstance(exc, redis.exceptions.ConnectionError):
        return f"cannot connect to Redis at {where}: {exc}"
    return f"Redis at {where} refused: {exc}"


async def backend_trouble(
    exc: BaseException, database_url: str, redis_url: str | None = None
) -> str | None:
    """``connection_trouble``, and a missing table told apart: a database never migrated,
    or one a migration behind."""
    if isinstance(exc, asyncpg.UndefinedTableError):
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            migrated = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        finally:
            await conn.close()
        if not migrated:
            return NO_TABLES_YET
        return f"{exc}: a migration is pending: run `countersign migrate`"
    return connection_trouble(exc, database_url, redis_url)
