"""``countersign partner …``: partners, their source codes, origins and API keys."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import asyncpg
import click

from countersign.cli.common import origins_callback, with_connection
from countersign_core.runtime import fail
from countersign_domain import patterns
from countersign_domain.audit import cli_actor
from countersign_domain.partners import (
    Grant,
    Partner,
    create_partner,
    grant_petition,
    granted_partners,
    list_partners,
    revoke_grant,
    revoke_partner,
)


def _source_code(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not re.fullmatch(patterns.SOURCE_CODE, value):
        raise click.BadParameter("use 1-64 of a-z, 0-9, '_' and '-'")
    return value


@click.group()
def partner() -> None:
    """Partners: their source code, allowed web origins and API key."""


@partner.command("create")
@click.argument("name")
@click.option(
    "--source",
    "source_code",
    required=True,
    callback=_source_code,
    help="Code stamped on the partner's signatures: 1-64 of a-z, 0-9, '_', '-'.",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    callback=origins_callback(allow_any=False),
    help="A web origin (https://example.org) whose pages may use the API; repeatable.",
)
def partner_create(name: str, source_code: str, origins: list[str]) -> None:
    """Create a partner and print its API key (on stdout, once: store it now)."""
    if not 1 <= len(name) <= 200:
        fail("the name must be 1-200 characters")

    async def action(conn: asyncpg.Connection) -> str:
        try:
            _, key = await create_partner(
                conn, actor=cli_actor(), name=name, source_code=source_code, origins=origins
            )
        except asyncpg.UniqueViolationError:
            fail(f"a partner with source code {source_code!r} exists already")
        return key

    key = with_connection(action)
    click.echo(key)
    click.echo(f"created partner {source_code}; the key above is shown only this once", err=True)


@partner.command("list")
@click.option("--petition", "slug", help="only the partners granted this petition")
def partner_list(slug: str | None) -> None:
    """List partners (never their keys), or those granted one petition."""
    partners: list[tuple[Partner, datetime | None]]
    if slug is None:
        partners = [(found, None) for found in with_connection(list_partners)]
    else:

        async def granted(conn: asyncpg.Connection) -> list[Grant]:
            return await granted_partners(conn, slug)

        partners = [(grant.partner, grant.granted_at) for grant in with_connection(granted)]
    if not partners:
        click.echo("no partners")
    for found, granted_at in partners:
        status = f"revoked {found.revoked_at:%Y-%m-%d}" if found.revoked_at else "active"
        origins = " ".join(found.allowed_origins) or "-"
        since = (
            f"granted {granted_at:%Y-%m-%d}"
            if granted_at
            else f"created {found.created_at:%Y-%m-%d}"
        )
        click.echo(f"{found.source_code}\t{found.name}\t{status}\t{since}\t{origins}")


@partner.command("revoke")
@click.argument("source_code")
def partner_revoke(source_code: str) -> None:
    """Revoke a partner: its key and origins stop working within seconds."""

    async def action(conn: asyncpg.Connection) -> Any:
        return await revoke_partner(conn, actor=cli_actor(), source_code=source_code)

    if with_connection(action) is None:
        fail(f"no active partner with source code {source_code!r}")
    click.echo(f"partner {source_code} is revoked")


@partner.command("grant")
@click.argument("source_code")
@click.argument("slug")
def partner_grant(source_code: str, slug: str) -> None:
    """Grant a partner a petition: its key signs and reads figures there, and its origins
    may embed it and sign from the browser. Audited."""

    async def action(conn: asyncpg.Connection) -> Any:
        return await grant_petition(conn, actor=cli_actor(), source_code=source_code, slug=slug)

    with_connection(action)
    click.echo(f"partner {source_code} is granted petition {slug}")


@partner.command("revoke-grant")
@click.argument("source_code")
@click.argument("slug")
def partner_revoke_grant(source_code: str, slug: str) -> None:
    """Take a petition back from a partner (within seconds). Audited."""

    async def action(conn: asyncpg.Connection) -> None:
        await revoke_grant(conn, actor=cli_actor(), source_code=source_code, slug=slug)

    with_connection(action)
    click.echo(f"partner {source_code} is no longer granted petition {slug}")
