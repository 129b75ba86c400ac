"""``countersign petition``: create petitions and move them through their statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import click

from countersign.cli.common import with_connection
from countersign.cli.partners import petition_origins
from countersign_core.runtime import fail
from countersign_domain.petitions import create_petition, set_status


@click.group()
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

    created = with_connection(action)
    click.echo(f"created petition {created.slug} ({created.status})")


def _set_status(slug: str, status: str) -> None:
    async def action(conn: asyncpg.Connection) -> Any:
        return await set_status(conn, slug, status)

    if with_connection(action) is None:
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


petition.add_command(petition_origins)
