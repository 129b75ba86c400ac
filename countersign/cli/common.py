"""What every command shares: settings, a connection to the configured servers, and how
a refusal of the rules is said."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
import click
import redis.exceptions

from countersign.embedded import resolve_servers
from countersign_core.connections import connect_pg
from countersign_core.runtime import fail, run
from countersign_core.settings import Settings, SettingsError, load_settings
from countersign_domain.errors import Problem
from countersign_domain.origins import normalise_origin

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


def with_servers(action: Callable[[str, str, Settings], Awaitable[T]]) -> T:
    """Run ``action(database_url, redis_url, settings)`` against the configured servers,
    or the embedded ones of the data folder when DATABASE_URL / REDIS_URL are unset.
    A rule's refusal (a ``Problem``) ends the command with status 1 and one line: the
    message and code the staff API answers with."""
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
    except SettingsError as exc:
        fail(str(exc))
    except Problem as exc:
        fail(_one_line(exc), 1)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        fail(f"cannot reach the database ({type(exc).__name__})")
    except redis.exceptions.ConnectionError as exc:
        fail(f"cannot reach Redis ({type(exc).__name__})")
    except asyncpg.PostgresError as exc:
        # It answered, and refused: say what it said (a server's message names the
        # statement or object at fault, not the values, which stay in its DETAIL).
        fail(f"the database refused: {type(exc).__name__}: {exc}{_pooler_hint(exc)}")


def _pooler_hint(exc: asyncpg.PostgresError) -> str:
    prepared = (asyncpg.DuplicatePreparedStatementError, asyncpg.InvalidSQLStatementNameError)
    if isinstance(exc, prepared):
        return (
            " (behind PgBouncer in transaction mode? set COUNTERSIGN_DATABASE_POOLER=transaction)"
        )
    return ""


def utc(value: datetime | None) -> datetime | None:
    """A time given without a zone is UTC (click reads them naive)."""
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


def _one_line(problem: Problem) -> str:
    """The message and code (and the fields' reasons, if any) the staff API answers with."""
    line = f"{problem.message} ({problem.code})"
    reasons = "; ".join(
        f"{name}: {' '.join(map(str, messages))}"
        for name, messages in (problem.fields or {}).items()
    )
    return f"{line}: {reasons}" if reasons else line


def with_connection(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go(database_url: str, _redis_url: str, settings: Settings) -> T:
        conn = await connect_pg(
            database_url, transaction_pooler=settings.database.pooled(database_url)
        )
        try:
            return await action(conn)
        finally:
            await conn.close()

    return with_servers(go)


def origins_callback(
    allow_any: bool,
) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], list[str]]:
    """A click callback: the web origins given, normalised, each once, sorted; a value
    that is not one is a usage error."""

    def normalise(
        _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
    ) -> list[str]:
        try:
            return sorted({normalise_origin(value, allow_any=allow_any) for value in values})
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return normalise
