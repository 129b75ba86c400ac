"""Plain-SQL migrations from ``sql/``, applied in file-name order and recorded."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import asyncpg

log = logging.getLogger("countersign_core.migrations")

# Any constant works; it only has to be the same for every process that migrates.
_MIGRATION_LOCK = 0x636F756E746572  # "counter"


def migrations_dir() -> Path:
    bundled = resources.files("countersign_core") / "sql"  # installed wheel (force-included)
    if bundled.is_dir():
        return Path(str(bundled))
    return Path(__file__).resolve().parent.parent / "sql"  # source checkout or editable


def _files(directory: Path | None) -> list[Path]:
    return sorted((directory or migrations_dir()).glob("*.sql"))


async def pending(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """The migrations not applied yet, without taking the lock or changing anything (what
    a new release's pods wait on while its migrations Job runs)."""
    done: set[str] = set()
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
    return [path.name for path in _files(directory) if path.name not in done]


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run concurrently:
    a second process waits on the lock, then finds nothing left to do."""
    files = _files(directory)
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in files:
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            log.info("applied migration %s", path.name)
            applied.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
