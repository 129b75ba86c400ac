"""Staff commands: tokens, the audit log, exports for delivery, and retention.

Registered on the ``countersign`` group in ``countersign.cli``. Like the rest of the
command, they use DATABASE_URL or the embedded servers of the data folder.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
import click

from countersign.cli.common import table, utc, when, with_connection, with_servers
from countersign_core.connections import create_pg_pool
from countersign_core.runtime import fail
from countersign_core.settings import Settings
from countersign_domain import audit as audit_log  # `audit` is a command here
from countersign_domain.export import ExportFilters, audited_export, count_rows
from countersign_domain.moderation import Anonymised, anonymise_closed
from countersign_domain.petitions import managed_petition
from countersign_domain.staff import (
    Role,
    StaffAccount,
    create_token,
    invite_staff,
    list_staff,
    list_tokens,
    remove_staff,
    revoke_token,
)

ROLES = click.Choice([role.value for role in Role])
DATES = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"])


# -- tokens -----------------------------------------------------------------------------------


@click.group()
def token() -> None:
    """Staff tokens for the /v1/admin API (shown once, stored hashed)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=ROLES,
    default="exporter",
    show_default=True,
    help="admin: everything; exporter: summaries and exports without emails.",
)
def token_create(name: str, role: str) -> None:
    """Create a token and print it, alone on stdout: it is not shown again.

    NAME identifies the token in the audit log (1-64 of letters, digits, . _ @ -);
    names are never reused, revoked ones included.
    """

    async def action(conn: asyncpg.Connection) -> str:
        return await create_token(conn, actor=audit_log.cli_actor(), name=name, role=Role(role))

    click.echo(with_connection(action))


@token.command("list")
def token_list() -> None:
    """Tokens with their role and use; never the tokens themselves."""
    tokens = with_connection(list_tokens)
    if not tokens:
        click.echo("no staff tokens")
        return
    click.echo(
        table(
            ["name", "role", "created", "last used", "revoked"],
            [
                [
                    t.name,
                    t.role.value,
                    when(t.created_at),
                    when(t.last_used_at),
                    when(t.revoked_at),
                ]
                for t in tokens
            ],
        )
    )


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke a token at once: its next request gets 401."""

    async def action(conn: asyncpg.Connection) -> None:
        await revoke_token(conn, actor=audit_log.cli_actor(), name=name)

    with_connection(action)
    click.echo(f"revoked token {name}")


# -- accounts -------------------------------------------------------------------------------


@click.group()
def staff() -> None:
    """Staff accounts: people who sign in to the console (/admin/) with an emailed link."""


@staff.command("invite")
@click.argument("email")
@click.option("--name", required=True, help="As the console and the audit log show it.")
@click.option(
    "--role",
    type=ROLES,
    default="exporter",
    show_default=True,
    help="admin: everything; exporter: figures and exports without emails.",
)
def staff_invite(email: str, name: str, role: str) -> None:
    """Create an account; its holder signs in at /admin/ with a link sent to EMAIL."""

    async def action(conn: asyncpg.Connection) -> StaffAccount:
        return await invite_staff(
            conn, actor=audit_log.cli_actor(), name=name, email=email, role=Role(role)
        )

    account = with_connection(action)
    click.echo(f"invited {account.name} ({account.role.value}): sign in at /admin/ with {email}")


@staff.command("list")
def staff_list() -> None:
    """Active accounts: name, email, role, since when."""
    accounts = with_connection(list_staff)
    if not accounts:
        click.echo("no staff accounts")
        return
    click.echo(
        table(
            ["name", "email", "role", "created"],
            [[a.name, a.email, a.role.value, when(a.created_at)] for a in accounts],
        )
    )


@staff.command("remove")
@click.argument("email")
def staff_remove(email: str) -> None:
    """Remove an account: its console sessions end and its links stop working at once."""

    async def action(conn: asyncpg.Connection) -> StaffAccount:
        return await remove_staff(conn, actor=audit_log.cli_actor(), email=email)

    click.echo(f"removed {with_connection(action).name}")


# -- audit log -------------------------------------------------------------------------------


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def audit(limit: int) -> None:
    """Print the audit log, newest first: who read or changed what, and how many rows."""

    async def action(conn: asyncpg.Connection) -> list[audit_log.AuditEntry]:
        return await audit_log.recent(conn, limit)

    entries = with_connection(action)
    if not entries:
        click.echo("the audit log is empty")
        return
    click.echo(
        table(
            ["at", "who", "action", "petition", "rows", "details"],
            [
                [
                    when(e.at),
                    e.actor,
                    e.action,
                    e.slug or "-",
                    "-" if e.row_count is None else str(e.row_count),
                    json.dumps(e.details, separators=(",", ":"), sort_keys=True),
                ]
                for e in entries
            ],
        )
    )


# -- export ---------------------------------------------------------------------------------


class FileWriteError(Exception):
    """The export file could not be written (disk full, permissions...)."""


class _Progress:
    """Feeds click's progress bar (rows done, rate, ETA) from the CSV chunks written."""

    def __init__(self, bar: Any, out: IO[bytes]) -> None:
        self.bar = bar
        self.out = out
        self.started = time.monotonic()
        self.rows = 0
        self.bytes = 0
        self._before_header = True  # the first line names the columns: not a row

    async def write(self, chunk: bytes) -> None:
        try:
            self.out.write(chunk)
        except OSError as exc:
            # Not an OSError any more: the command reports those as database trouble.
            raise FileWriteError(exc.strerror or type(exc).__name__) from exc
        self.bytes += len(chunk)
        # Lines, not rows, if a value holds a line break: ``done`` settles the count.
        lines = chunk.count(b"\n")
        if lines and self._before_header:
            lines -= 1
            self._before_header = False
        self.rows += lines
        self.bar.update(lines, f"{self.rate():,.0f} rows/s")

    def done(self, rows: int) -> None:
        """End on the rows the COPY wrote, which the final line reports too (signatures
        counted since the bar's length was taken included)."""
        self.bar.length = max(self.bar.length, rows)
        self.bar.update(rows - self.rows)
        self.bar.render_progress()  # the length may have changed alone
        self.rows = rows

    def rate(self) -> float:
        return self.rows / max(time.monotonic() - self.started, 1e-6)


@click.command()
@click.argument("slug")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--country", default=None, help="Only signatures from this country (ISO code).")
@click.option("--source", default=None, help="Only signatures with this source code.")
@click.option("--signed-after", type=DATES, default=None, help="From this time (UTC if no zone).")
@click.option("--signed-before", type=DATES, default=None, help="Before this time.")
@click.option(
    "--consent",
    type=click.Choice(["yes", "no"]),
    default=None,
    help="yes: only those who agreed to hear from the campaign; no: only the others.",
)
@click.option("--include-email", is_flag=True, help="Add the signers' emails.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def export(
    slug: str,
    out_path: Path,
    country: str | None,
    source: str | None,
    signed_after: datetime | None,
    signed_before: datetime | None,
    consent: str | None,
    include_email: bool,
    force: bool,
) -> None:
    """Export a petition's counted signatures to a file, as the API does (audited).

    The file appears complete or not at all: rows go to FILE.partial, renamed at the end.
    An existing FILE is replaced only with --force.
    """
    if out_path.exists() and not force:
        fail(f"{out_path} exists: give --force to replace it", 1)
    partial = out_path.with_name(out_path.name + ".partial")

    async def action(
        database_url: str, _redis_url: str, settings: Settings
    ) -> tuple[int, int, float]:
        filters = ExportFilters(
            country=country.upper() if country else None,
            source=source,
            signed_after=utc(signed_after),
            signed_before=utc(signed_before),
            consent=None if consent is None else consent == "yes",
        )
        # A pool: the audit log is written beside the COPY, and after it if it fails.
        pool = await create_pg_pool(
            database_url,
            max_size=2,
            application_name="export",
            transaction_pooler=settings.database.pooled(database_url),
        )
        try:
            petition = await managed_petition(pool, slug)
            total = await count_rows(pool, petition.id, filters)
            with click.progressbar(
                length=total,
                label=f"exporting {slug}",
                file=sys.stderr,
                show_pos=True,
                show_eta=True,
                item_show_func=lambda rate: rate,
            ) as bar:
                progress = _Progress(bar, out)
                rows = await audited_export(
                    pool,
                    actor=audit_log.cli_actor(),
                    via="cli",
                    petition_id=petition.id,
                    filters=filters,
                    include_email=include_email,
                    sink=progress.write,
                    timeout=settings.export_timeout,
                )
                progress.done(rows)
            return rows, progress.bytes, time.monotonic() - progress.started
        finally:
            await pool.close()

    try:
        out = partial.open("wb")
    except OSError as exc:
        fail(f"cannot write {partial}: {exc.strerror}")
    try:
        with out:
            rows, size, seconds = with_servers(action, needs_redis=False)
    except FileWriteError as exc:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {partial}: {exc}")
    except BaseException:  # failures exit through SystemExit too
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out_path)
    click.echo(
        f"exported {rows:,} signatures ({size / 1e6:.1f} MB) to {out_path} in {seconds:.1f}s "
        f"({rows / max(seconds, 1e-6):,.0f} rows/s)",
        err=True,
    )


# -- retention --------------------------------------------------------------------------------


@click.command()
@click.option(
    "--closed-for",
    "days",
    type=click.IntRange(min=1),
    required=True,
    help="Petitions closed at least this many days ago.",
)
def anonymise(days: int) -> None:
    """Remove signers' names, emails, postal codes (and keyed hashes) from petitions
    closed DAYS ago or more. Country, source and times stay: every count is unchanged."""

    async def action(conn: asyncpg.Connection) -> list[Anonymised]:
        return await anonymise_closed(conn, actor=audit_log.cli_actor(), closed_for_days=days)

    done = with_connection(action)
    if not done:
        click.echo(f"no petition has been closed for {days} days or more")
        return
    for petition in done:
        click.echo(f"anonymised {petition.signatures} signature(s) of {petition.slug}")
