"""Commands that run the services: dev, api, worker, migrate, rebuild."""

from __future__ import annotations

import socket

import click

from counter_worker.main import connected_worker
from counter_worker.main import main as worker_main
from countersign.cli.common import settings_or_exit, with_connection, with_servers
from countersign.dev import run_dev
from countersign_core.connections import connect_pg
from countersign_core.migrations import MigrationError
from countersign_core.migrations import migrate as apply_migrations
from countersign_core.migrations import pending as pending_migrations
from countersign_core.runtime import fail
from countersign_core.settings import Settings, SettingsError
from countersign_core.texts import TextsError
from countersign_domain.identity_migration import data_steps
from petition_api.main import check, serve, serve_one


@click.command()
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
    settings = settings_or_exit()
    port = settings.api.port if port is None else port
    if demo_port is None:
        demo_port = settings.dev.demo_port
    if demo_port is None:
        demo_port = port + 1 if port else 0  # 0: a free port, as for the API
    raise SystemExit(run_dev(settings, host or settings.api.host, port, demo_port))


@click.command()
@click.option("--host", default=None, help="Interface to listen on [COUNTERSIGN_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [COUNTERSIGN_PORT].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="API processes sharing the port (SO_REUSEPORT); one per core is a good start.",
)
# `countersign dev` binds the port itself and hands the socket over.
@click.option("--listen-fd", type=int, default=None, hidden=True)
def api(host: str | None, port: int | None, workers: int, listen_fd: int | None) -> None:
    """Serve the HTTP API (needs DATABASE_URL, REDIS_URL, COUNTERSIGN_SECRET_KEY).
    Port 0 takes a free port; the log says which."""
    settings = settings_or_exit()
    try:
        check(settings)
    except (SettingsError, TextsError) as exc:
        fail(str(exc))
    host = host or settings.api.host
    port = settings.api.port if port is None else port
    if listen_fd is not None:
        serve_one(settings, host, port, sock=socket.socket(fileno=listen_fd))
    else:
        serve(settings, host, port, workers)


@click.command()
def worker() -> None:
    """Run a counter worker (needs DATABASE_URL and REDIS_URL). Run several for failover."""
    worker_main()


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Apply nothing: exit 0 if every migration is applied, else list the pending ones "
    "and exit 1 (for a pod that waits for its release's migrations).",
)
def migrate(check: bool) -> None:
    """Apply the SQL migrations in order. Safe to run from several processes at once.
    With COUNTERSIGN_SECRET_KEY set, also the data steps that rewrite stored hashes."""
    if check:
        waiting = with_connection(pending_migrations)
        if waiting:
            click.echo(f"{len(waiting)} migration(s) pending: {', '.join(waiting)}")
            raise SystemExit(1)
        click.echo("every migration is applied")
        return

    async def action(database_url: str, _redis_url: str, settings: Settings) -> list[str]:
        # Direct, never through a transaction pooler: the lock is held for the session.
        conn = await connect_pg(settings.database.direct(database_url))
        try:
            return await apply_migrations(conn, data_steps=data_steps(settings.secret_key))
        except MigrationError as exc:
            fail(str(exc))
        finally:
            await conn.close()

    applied = with_servers(action, creates_data_dir=True, needs_redis=False)
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


@click.command()
def rebuild() -> None:
    """Recompute every petition's Redis counters from Postgres, while signing goes on."""

    async def action(database_url: str, redis_url: str, settings: Settings) -> int:
        async with connected_worker(settings, database_url, redis_url) as worker:
            return await worker.rebuild_all()

    click.echo(f"rebuilt the counters of {with_servers(action)} petition(s)")
