"""Plain-SQL migrations from ``sql/``, applied in file-name order and recorded.

A migration may need work that SQL cannot do (an HMAC keyed by the secret key, which
the database never sees): its caller hands ``migrate`` a data step for that file, a
function run on the same connection right after the file, in the same transaction, so
the file and its step are applied together or not at all. While a step is provided the
file sees ``current_setting('countersign.data_step', true) = 'on'``, and can refuse to
go on without one when there is work only the step can do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path

import asyncpg

log = logging.getLogger("countersign_core.migrations")

# Any constant works; it only has to be the same for every process that migrates.
_MIGRATION_LOCK = 0x636F756E746572  # "counter"

DataStep = Callable[[asyncpg.Connection], Awaitable[None]]


class MigrationError(Exception):
    """A migration refused to apply, or failed; the message says which and why."""


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


async def migrate(
    conn: asyncpg.Connection,
    directory: Path | None = None,
    *,
    data_steps: Mapping[str, DataStep] | None = None,
) -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run concurrently:
    a second process waits on the lock, then finds nothing left to do. ``data_steps``
    maps a file name to its data step."""
    files = _files(directory)
    steps = data_steps or {}
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
            step = steps.get(path.name)
            try:
                async with conn.transaction():
                    await conn.execute(
                        "SELECT set_config('countersign.data_step', $1, true)",
                        "on" if step else "off",
                    )
                    await conn.execute(path.read_text(encoding="utf-8"))
                    if step is not None:
                        await step(conn)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name) VALUES ($1)", path.name
                    )
            except asyncpg.RaiseError as exc:  # the migration's own refusal: its words
                raise MigrationError(f"{path.name}: {exc.message}") from None
            log.info("applied migration %s", path.name)
            applied.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
