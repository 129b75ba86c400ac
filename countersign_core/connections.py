"""Connections to Postgres and Redis, configured the same way for every process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from countersign_core.redis_url import RedisTarget

# A client of one server (directly or through Sentinel) or of a Redis Cluster: the same
# commands, scripts and pipelines for what this project does.
RedisClient = Redis | RedisCluster

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
    # A primary demoted by a failover answers writes with READONLY until the client finds
    # the new one (through Sentinel, or the cluster's slot map on the next call).
    redis.exceptions.ReadOnlyError,
    # A cluster mid-failover or mid-resharding: the client follows MOVED and ASK itself and
    # raises these only once its retries are spent.
    redis.exceptions.ClusterError,  # CLUSTERDOWN, MASTERDOWN, retries spent
    redis.exceptions.AskError,  # and MovedError
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
)


def _pooler_options(transaction_pooler: bool) -> dict[str, Any]:
    # Behind a pooler in transaction mode (PgBouncer's pool_mode=transaction) each
    # transaction may run on another server connection: a named prepared statement
    # asyncpg caches on one is unknown on the next (or already there). Unnamed statements
    # live only within their own round trip, so turning the cache off is enough.
    return {"statement_cache_size": 0} if transaction_pooler else {}


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
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    application_name: str = "countersign",
    transaction_pooler: bool = False,
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        # A pooler's client connections cost the database nothing: open them all at once,
        # so that a burst does not wait on new connections (and their logins) first.
        min_size=max_size if transaction_pooler else min_size,
        max_size=max_size,
        # A server that accepts connections but never answers (frozen, or a black-holed
        # address) holds a new connection no longer than this; requests are bounded more
        # tightly by COUNTERSIGN_BACKEND_TIMEOUT.
        timeout=5,
        command_timeout=30,
        server_settings={"application_name": application_name},
        # The reset asyncpg runs when a connection goes back to its pool (UNLISTEN, RESET
        # ALL, unlock...) undoes session state, which a transaction pooler keeps none
        # of: through one it would only double the round trips of every query.
        reset=_no_reset if transaction_pooler else None,
        **_pooler_options(transaction_pooler),
    )


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


async def connect_pg(
    dsn: str, *, transaction_pooler: bool = False, timeout: float = 60
) -> asyncpg.Connection:
    """One connection (commands, probes); see ``create_pg_pool`` for ``transaction_pooler``."""
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, timeout=timeout, **_pooler_options(transaction_pooler)
    )
    return conn


_CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 15,
}


class SentinelManagedRedis(Redis):
    """The primary a Sentinel group names, which also closes its Sentinel connections."""

    sentinels: list[Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.sentinels:
            await sentinel.aclose()


def create_redis(url: str, *, client_name: str | None = None) -> RedisClient:
    """A client for REDIS_URL (countersign_core/redis_url.py): one server, a Sentinel
    group's primary (found again after every failover), or a cluster."""
    target = RedisTarget.parse(url)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            ssl=target.tls,
            client_name=client_name,
            **auth,
            **_CLIENT_OPTIONS,
        )
    if target.kind == "sentinel":
        assert target.service is not None
        sentinel = Sentinel(
            list(target.nodes),
            sentinel_kwargs={
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "ssl": target.tls,
                **target.sentinel_auth,
            },
        )
        client = sentinel.master_for(
            target.service,
            redis_class=SentinelManagedRedis,
            db=target.db,
            ssl=target.tls,
            client_name=client_name,
            **auth,
            **_CLIENT_OPTIONS,
        )
        assert isinstance(client, SentinelManagedRedis)
        client.sentinels = sentinel.sentinels
        return client
    return Redis.from_url(url, client_name=client_name, **_CLIENT_OPTIONS)


async def ping_redis(client: RedisClient) -> None:
    """Return once Redis answers; raise otherwise. A cluster answers only when each of its
    primaries does and it says it serves every slot."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
        state = (await client.cluster_info()).get("cluster_state")
        if state != "ok":
            raise redis.exceptions.ClusterDownError(f"cluster_state is {state}")
    else:
        await client.ping()


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


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
    if isinstance(
        exc, asyncpg.DuplicatePreparedStatementError | asyncpg.InvalidSQLStatementNameError
    ):
        return (
            f"{exc} (behind PgBouncer in transaction mode? set COUNTERSIGN_DATABASE_POOLER="
            "transaction)"
        )
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
