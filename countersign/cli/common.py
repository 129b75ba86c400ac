"""What every command shares: settings, a connection to the configured servers, and how
a refusal of the rules is said."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import asyncpg
import click

from countersign.embedded import EmbeddedStartError, resolve_servers
from countersign_core.connections import backend_trouble, connect_pg
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


def with_servers(
    action: Callable[[str, str, Settings], Awaitable[T]],
    *,
    creates_data_dir: bool = False,
    needs_redis: bool = True,
) -> T:
    """Run ``action(database_url, redis_url, settings)`` against the configured servers,
    or the embedded ones of the data folder when DATABASE_URL / REDIS_URL are unset
    (REDIS_URL only if ``needs_redis``: otherwise ``redis_url`` is "" when unset).

    Only ``dev`` and ``migrate`` (``creates_data_dir``) start embedded servers in a data
    folder that does not exist yet; any other command refuses, creating nothing. A rule's
    refusal (a ``Problem``) ends the command with status 1 and one line: the message and
    code the staff API answers with; so does a server out of reach, in words."""
    settings = settings_or_exit()
    urls = {"DATABASE_URL": settings.database.url}
    if needs_redis:
        urls["REDIS_URL"] = settings.redis.url
    if not creates_data_dir:
        require_data_dir(settings, [name for name, url in urls.items() if not url])

    async def go() -> T:
        if settings.database.url and not needs_redis:
            database_url, redis_url, embedded = settings.database.url, "", None
        else:
            try:
                database_url, redis_url, embedded = await resolve_servers(
                    settings.database.url, settings.redis.url, settings.dev.data_dir
                )
            except EmbeddedStartError as exc:
                fail(str(exc), 1)
        try:
            return await action(database_url, redis_url, settings)
        except Problem:
            raise
        except Exception as exc:
            trouble = await backend_trouble(exc, database_url, redis_url or None)
            if trouble is None:
                raise
            fail(trouble, 1)
        finally:
            if embedded is not None:
                embedded.stop()

    try:
        return run(go())
    except SettingsError as exc:
        fail(str(exc))
    except Problem as exc:
        refuse(exc)


def require_data_dir(settings: Settings, unset: list[str]) -> None:
    """Embedded servers only where ``countersign dev`` or ``migrate`` made them: a command
    run from another folder by mistake says so instead of starting an empty database."""
    if unset and not settings.dev.data_dir.is_dir():
        fail(
            f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set, and there is "
            f"no data folder {settings.dev.data_dir.absolute()} for embedded servers: run "
            "this where `countersign dev` runs (or set COUNTERSIGN_DATA_DIR to its data "
            "folder), or set DATABASE_URL and REDIS_URL"
        )


def refuse(problem: Problem) -> NoReturn:
    """End the command as the staff API refuses: its message and code, on one line."""
    fail(_one_line(problem), 1)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with spaces, a header row first."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S%z") if value else "-"


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

    return with_servers(go, needs_redis=False)


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
