"""``countersign suspects``: review signatures the abuse checks held back.

Output names no signer unless asked (``--with-contact``): an id, the time, the country,
the source and the reason are what deciding needs.
"""

from __future__ import annotations

import asyncpg
import click

from countersign.cli.common import with_connection
from countersign_domain.audit import cli_actor
from countersign_domain.moderation import (
    Suspect,
    invalidate_suspects,
    list_suspects,
    release_suspects,
    suspects_with_contact,
)


@click.group()
def suspects() -> None:
    """List suspect signatures of a petition; release or invalidate them."""


@suspects.command("list")
@click.option("--petition", "slug", required=True, help="The petition's slug.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--with-contact", is_flag=True, help="Also show each signer's name and email (audited)."
)
def list_command(slug: str, limit: int, with_contact: bool) -> None:
    """Suspects awaiting review, oldest first."""

    async def action(conn: asyncpg.Connection) -> list[Suspect]:
        if with_contact:
            return await suspects_with_contact(conn, actor=cli_actor(), slug=slug, limit=limit)
        return await list_suspects(conn, slug, limit)

    found = with_connection(action)
    columns = ["id", "created_at", "country", "source", "reason"]
    if with_contact:
        columns += ["name", "email"]
    click.echo("\t".join(columns))
    for suspect in found:
        row = [suspect.id, suspect.created_at.isoformat(), suspect.country, suspect.source or "-"]
        row.append(suspect.reason)
        if with_contact:
            row += [suspect.name, suspect.email]
        click.echo("\t".join(map(str, row)))
    click.echo(f"{len(found)} suspect(s) awaiting review", err=True)


def _selection(ids: tuple[int, ...], all_of_petition: bool, slug: str | None) -> list[int] | None:
    if all_of_petition == bool(ids):
        raise click.UsageError("give signature ids, or --all with --petition")
    if all_of_petition and not slug:
        raise click.UsageError("--all needs --petition")
    return list(ids) or None


_ids = click.argument("ids", nargs=-1, type=click.IntRange(min=1))
_all = click.option("--all", "all_of_petition", is_flag=True, help="Every suspect of --petition.")
_slug = click.option("--petition", "slug", default=None, help="Only this petition's.")


@suspects.command()
@_ids
@_all
@_slug
def release(ids: tuple[int, ...], all_of_petition: bool, slug: str | None) -> None:
    """Count these suspects after all (the live counts follow)."""
    selection = _selection(ids, all_of_petition, slug)

    async def action(conn: asyncpg.Connection) -> list[int]:
        return await release_suspects(conn, actor=cli_actor(), ids=selection, slug=slug)

    _report("released", with_connection(action), selection)


@suspects.command()
@_ids
@_all
@_slug
@click.option("--reason", default="fraud", show_default=True, help="Recorded with each.")
def invalidate(ids: tuple[int, ...], all_of_petition: bool, slug: str | None, reason: str) -> None:
    """Never count these suspects."""
    selection = _selection(ids, all_of_petition, slug)

    async def action(conn: asyncpg.Connection) -> list[int]:
        return await invalidate_suspects(
            conn, actor=cli_actor(), ids=selection, slug=slug, reason=reason
        )

    _report("invalidated", with_connection(action), selection)


def _report(done: str, changed: list[int], asked: list[int] | None) -> None:
    click.echo(f"{done} {len(changed)} signature(s)")
    if asked and (skipped := sorted(set(asked) - set(changed))):
        # Unknown, not suspect, or already dealt with: said, not an error.
        click.echo(f"not awaiting review: {', '.join(map(str, skipped))}", err=True)
