"""``countersign mailer`` and ``countersign purge-pending``: the email side of signing."""

from __future__ import annotations

import asyncpg
import click

from countersign.cli.common import settings_or_exit, with_connection
from countersign_domain.housekeeping import purge_unconfirmed
from mail_sender.main import main as mailer_main


@click.command()
def mailer() -> None:
    """Run a mail sender: delivers confirmation emails over SMTP (needs DATABASE_URL,
    SMTP_URL, COUNTERSIGN_MAIL_FROM, COUNTERSIGN_PUBLIC_URL, COUNTERSIGN_SECRET_KEY).
    Run several for throughput or failover."""
    mailer_main()


@click.command("purge-pending")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Unconfirmed for this many days [COUNTERSIGN_PENDING_PURGE_DAYS].",
)
def purge_pending(days: int | None) -> None:
    """Delete signatures nobody confirmed in time (mail senders also do it hourly)."""
    older_than = days or settings_or_exit().confirmation.pending_purge_days

    async def action(conn: asyncpg.Connection) -> int:
        return await purge_unconfirmed(conn, older_than)

    click.echo(f"purged {with_connection(action)} pending signature(s)")
