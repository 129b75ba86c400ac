"""``countersign partner …`` and ``countersign petition origins``: who may embed and sign."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import click

from countersign.cli.common import with_connection
from countersign_core.runtime import fail
from countersign_domain.origins import normalise_origin, set_petition_origins
from countersign_domain.partners import create_partner, list_partners, revoke_partner

T = TypeVar("T")

SOURCE_CODE = re.compile(r"^[a-z0-9_-]{1,64}$")


def _origins(
    allow_any: bool,
) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], list[str]]:
    def normalise(
        _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
    ) -> list[str]:
        try:
            return sorted({normalise_origin(value, allow_any=allow_any) for value in values})
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return normalise


def _source_code(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not SOURCE_CODE.match(value):
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
    callback=_origins(allow_any=False),
    help="A web origin (https://example.org) whose pages may use the API; repeatable.",
)
def partner_create(name: str, source_code: str, origins: list[str]) -> None:
    """Create a partner and print its API key (on stdout, once: store it now)."""
    if not 1 <= len(name) <= 200:
        fail("the name must be 1-200 characters")

    async def action(conn: asyncpg.Connection) -> str:
        try:
            _, key = await create_partner(conn, name=name, source_code=source_code, origins=origins)
        except asyncpg.UniqueViolationError:
            fail(f"a partner with source code {source_code!r} exists already")
        return key

    key = with_connection(action)
    click.echo(key)
    click.echo(f"created partner {source_code}; the key above is shown only this once", err=True)


@partner.command("list")
def partner_list() -> None:
    """List partners (never their keys)."""
    partners = with_connection(list_partners)
    if not partners:
        click.echo("no partners")
    for found in partners:
        status = f"revoked {found.revoked_at:%Y-%m-%d}" if found.revoked_at else "active"
        origins = " ".join(found.allowed_origins) or "-"
        click.echo(
            f"{found.source_code}\t{found.name}\t{status}\t"
            f"created {found.created_at:%Y-%m-%d}\t{origins}"
        )


@partner.command("revoke")
@click.argument("source_code")
def partner_revoke(source_code: str) -> None:
    """Revoke a partner: its key and origins stop working within seconds."""

    async def action(conn: asyncpg.Connection) -> Any:
        return await revoke_partner(conn, source_code)

    if with_connection(action) is None:
        fail(f"no active partner with source code {source_code!r}")
    click.echo(f"partner {source_code} is revoked")


@click.command("origins")
@click.argument("slug")
@click.argument("origins", nargs=-1, callback=_origins(allow_any=True))
def petition_origins(slug: str, origins: list[str]) -> None:
    """Set the web origins whose pages may embed the petition and sign from the browser.

    ORIGINS replace the current ones: e.g. https://example.org, or * for any site.
    With none, only partners' origins remain allowed.
    """

    async def action(conn: asyncpg.Connection) -> list[str] | None:
        return await set_petition_origins(conn, slug, origins)

    if with_connection(action) is None:
        fail(f"no petition with slug {slug!r}")
    click.echo(f"petition {slug} allows: {' '.join(origins) or 'no origin of its own'}")
