"""What every command shares: settings, and a connection to the configured servers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from countersign.embedded import resolve_servers
from countersign_core.runtime import fail, run
from countersign_core.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


def with_servers(action: Callable[[str, str, Settings], Awaitable[T]]) -> T:
    """Run ``action(database_url, redis_url, settings)`` against the configured servers,
    or the embedded ones of the data folder when DATABASE_URL / REDIS_URL are unset."""
    settings = settings_or_exit()

    async def go() -> T:
        database_url, redis_url, embedded = await resolve_servers(
            settings.database.url, settings.redis.url, settings.dev.data_dir
        )
        try:
            return await action(database_url, redis_url, settings)
        finally:
            if embedded is not None:
                embedded.stop()

    try:
        return run(go())
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"cannot reach the database ({type(exc).__name__})")


def with_connection(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go(database_url: str, _redis_url: str, _settings: Settings) -> T:
        conn = await asyncpg.connect(database_url)
        try:
            return await action(conn)
        finally:
            await conn.close()

    return with_servers(go)
