"""``countersign petition``: create petitions, move them through their statuses, and
set their allowed origins. The rules and the audit entries are the domain's
(``countersign_domain.petitions``), the same as the staff API's."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import click

from countersign.cli.common import origins_callback, utc, with_connection
from countersign_domain.audit import cli_actor
from countersign_domain.petitions import (
    ManagedPetition,
    create_petition,
    set_status,
    update_petition,
)

NO_CONFIRMATION_WARNING = (
    "countersign: warning: without confirmation a signature counts at once, so anyone who "
    "signs someone else's address and watches the total can tell whether that address had "
    "signed already; only petitions that require confirmation are safe against this "
    '(README, "What an answer can reveal")'
)


@click.group()
def petition() -> None:
    """Create petitions, open or close them, and set where they may be signed from."""


@petition.command("create")
@click.option("--slug", required=True, help="URL name: lowercase letters, digits, '-'.")
@click.option("--title", required=True)
@click.option("--text", default="", help="The petition's text.")
@click.option("--target", default="", help="Who the petition is addressed to.")
@click.option("--goal", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--closes-at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
    default=None,
    help="When it stops taking signatures (UTC if no zone).",
)
@click.option("--open", "open_now", is_flag=True, help="Open it for signatures at once.")
@click.option(
    "--confirmation/--no-confirmation",
    default=True,
    show_default=True,
    help="Count a signature only once the signer confirms their email address.",
)
@click.option(
    "--data-controller",
    default=None,
    help="Who holds the signers' data [COUNTERSIGN_DATA_CONTROLLER].",
)
@click.option(
    "--privacy-policy-url",
    default=None,
    help="Where the privacy policy is [COUNTERSIGN_PRIVACY_POLICY_URL].",
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
    data_controller: str | None,
    privacy_policy_url: str | None,
) -> None:
    """Create a petition (a draft unless --open)."""
    if not confirmation:
        click.echo(NO_CONFIRMATION_WARNING, err=True)

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await create_petition(
            conn,
            actor=cli_actor(),
            slug=slug,
            title=title,
            body=text,
            target=target,
            goal=goal,
            status="open" if open_now else "draft",
            closes_at=utc(closes_at),
            require_confirmation=confirmation,
            data_controller=data_controller,
            privacy_policy_url=privacy_policy_url,
        )

    created = with_connection(action)
    click.echo(f"created petition {created.slug} ({created.status})")


def _set_status(slug: str, status: str) -> None:
    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await set_status(conn, actor=cli_actor(), slug=slug, status=status)

    click.echo(f"petition {slug} is {with_connection(action).status}")


@petition.command("open")
@click.argument("slug")
def petition_open(slug: str) -> None:
    """Open a draft for signatures, or reopen a closed petition."""
    _set_status(slug, "open")


@petition.command("close")
@click.argument("slug")
def petition_close(slug: str) -> None:
    """Stop taking signatures (an open petition only: a draft is opened first)."""
    _set_status(slug, "closed")


@petition.command("origins")
@click.argument("slug")
@click.argument("origins", nargs=-1, callback=origins_callback(allow_any=True))
def petition_origins(slug: str, origins: list[str]) -> None:
    """Set the web origins whose pages may embed the petition and sign from the browser.

    ORIGINS replace the current ones: e.g. https://example.org, or * for any site.
    With none, only the origins of the partners granted the petition remain allowed.
    """

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await update_petition(
            conn, actor=cli_actor(), slug=slug, changes={"allowed_origins": origins}
        )

    allowed = with_connection(action).allowed_origins
    click.echo(f"petition {slug} allows: {' '.join(allowed) or 'no origin of its own'}")
