"""The ``countersign`` command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import click

from countersign import cli_staff
from countersign.cli_partners import partner, petition_origins
from countersign.embedded import resolve_servers
from countersign.mail_commands import mailer, purge_pending
from countersign.migrations import migrate as apply_migrations
from countersign.runtime import configure_logging, fail, run
from countersign.settings import Settings, SettingsError, load_settings
from countersign.suspects_cli import suspects

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


def _with_servers(action: Callable[[str, str, Settings], Awaitable[T]]) -> T:
    """Run ``action(database_url, redis_url, settings)`` against the configured servers,
    or the embedded ones of the data folder when DATABASE_URL / REDIS_URL are unset."""
    settings = _settings()

    async def go() -> T:
        database_url, redis_url, embedded = await resolve_servers(
            settings.database_url, settings.redis_url, settings.data_dir
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


def _with_connection(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go(database_url: str, _redis_url: str, _settings: Settings) -> T:
        conn = await asyncpg.connect(database_url)
        try:
            return await action(conn)
        finally:
            await conn.close()

    return _with_servers(go)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """countersign: petition signatures in Postgres, exact live counts in Redis.

    Settings come from environment variables (see the README); with DATABASE_URL and
    REDIS_URL unset, commands use embedded servers under COUNTERSIGN_DATA_DIR.
    """


@main.command()
@click.option("--host", default=None, help="Interface to listen on [COUNTERSIGN_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [COUNTERSIGN_PORT].")
@click.option(
    "--demo-port",
    type=int,
    default=None,
    help="Port of the demo partner page [COUNTERSIGN_DEMO_PORT; default: the API port + 1].",
)
def dev(host: str | None, port: int | None, demo_port: int | None) -> None:
    """Run everything on this machine: servers, migrations, demo petition, API, worker.

    Starts embedded Postgres and Redis under the data folder unless DATABASE_URL and
    REDIS_URL are set. Data survives a restart. Ctrl-C stops everything.
    """
    from countersign.dev import run_dev

    settings = _settings()
    configure_logging(settings.log_level)
    port = port or settings.port
    demo_port = demo_port or settings.demo_port or port + 1
    raise SystemExit(run_dev(settings, host or settings.host, port, demo_port))


@main.command()
@click.option("--host", default=None, help="Interface to listen on [COUNTERSIGN_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [COUNTERSIGN_PORT].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="API processes sharing the port (SO_REUSEPORT); one per core is a good start.",
)
def api(host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP API (needs DATABASE_URL, REDIS_URL, COUNTERSIGN_SECRET_KEY)."""
    from countersign.texts import TextsError
    from petition_api.main import check, serve

    settings = _settings()
    try:
        check(settings)
    except (SettingsError, TextsError) as exc:
        fail(str(exc))
    serve(settings, host or settings.host, port or settings.port, workers)


@main.command()
def worker() -> None:
    """Run a counter worker (needs DATABASE_URL and REDIS_URL). Run several for failover."""
    from counter_worker.main import main as worker_main

    worker_main()


@main.command()
def migrate() -> None:
    """Apply the SQL migrations in order. Safe to run from several processes at once."""

    applied = _with_connection(apply_migrations)
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


@main.group()
def petition() -> None:
    """Create petitions and open or close them."""


@petition.command("create")
@click.option("--slug", required=True, help="URL name: lowercase letters, digits, '-'.")
@click.option("--title", required=True)
@click.option("--text", default="", help="The petition's text.")
@click.option("--target", default="", help="Who the petition is addressed to.")
@click.option("--goal", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--closes-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]), default=None)
@click.option("--open", "open_now", is_flag=True, help="Open it for signatures at once.")
@click.option(
    "--confirmation/--no-confirmation",
    default=True,
    show_default=True,
    help="Count a signature only once the signer confirms their email address.",
)
def petition_create(
    slug: str,
    title: str,
    text: str,
    target: str,
    goal: int,
    closes_at: datetime | None,
    open_now: bool,
    confirmation: bool,
) -> None:
    """Create a petition (a draft unless --open)."""
    from petition_api.petitions import create_petition

    async def action(conn: asyncpg.Connection) -> Any:
        try:
            return await create_petition(
                conn,
                slug=slug,
                title=title,
                body=text,
                target=target,
                goal=goal,
                status="open" if open_now else "draft",
                closes_at=closes_at,
                require_confirmation=confirmation,
            )
        except asyncpg.UniqueViolationError:
            fail(f"a petition with slug {slug!r} exists already")
        except asyncpg.CheckViolationError:
            fail("the slug must be 1-100 of a-z, 0-9 and '-', starting with a letter or digit")

    created = _with_connection(action)
    click.echo(f"created petition {created.slug} ({created.status})")


def _set_status(slug: str, status: str) -> None:
    from petition_api.petitions import set_status

    async def action(conn: asyncpg.Connection) -> Any:
        return await set_status(conn, slug, status)

    if _with_connection(action) is None:
        fail(f"no petition with slug {slug!r}")
    click.echo(f"petition {slug} is {status}")


@petition.command("open")
@click.argument("slug")
def petition_open(slug: str) -> None:
    """Open a petition for signatures (also reopens a closed one)."""
    _set_status(slug, "open")


@petition.command("close")
@click.argument("slug")
def petition_close(slug: str) -> None:
    """Stop taking signatures."""
    _set_status(slug, "closed")


@main.command()
def rebuild() -> None:
    """Recompute every petition's Redis counters from Postgres, while signing goes on."""
    from counter_worker.main import connected_worker

    async def action(database_url: str, redis_url: str, settings: Settings) -> int:
        async with connected_worker(settings, database_url, redis_url) as worker:
            return await worker.rebuild_all()

    click.echo(f"rebuilt the counters of {_with_servers(action)} petition(s)")


main.add_command(cli_staff.token)
main.add_command(cli_staff.audit)
main.add_command(cli_staff.export)
main.add_command(cli_staff.anonymise)
main.add_command(mailer)
main.add_command(purge_pending)
main.add_command(partner)
petition.add_command(petition_origins)
main.add_command(suspects)
