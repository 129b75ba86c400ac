"""``countersign petition``: create and edit petitions and their translations, move them
through their statuses, and set their allowed origins. The rules and the audit entries
are the domain's (``countersign_domain.petitions``), the same as the staff API's."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import click

from countersign.cli.common import origins_callback, utc, with_connection
from countersign_domain.audit import cli_actor
from countersign_domain.petitions import (
    ManagedPetition,
    PetitionChanges,
    create_petition,
    remove_translation,
    set_status,
    translate_petition,
    update_petition,
)

CLOSES_AT = click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"])


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
    type=CLOSES_AT,
    default=None,
    help="When it stops taking signatures (UTC if no zone).",
)
@click.option(
    "--lang",
    "default_lang",
    default="en",
    show_default=True,
    help="The language of --title, --text and --target (its default language).",
)
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
    default_lang: str,
) -> None:
    """Create a petition (a draft unless --open)."""

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
            default_lang=default_lang,
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
    With none, only partners' origins remain allowed.
    """

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await update_petition(
            conn, actor=cli_actor(), slug=slug, changes={"allowed_origins": origins}
        )

    allowed = with_connection(action).allowed_origins
    click.echo(f"petition {slug} allows: {' '.join(allowed) or 'no origin of its own'}")


@petition.command("edit")
@click.argument("slug")
@click.option("--title", default=None, help="The title, in the default language.")
@click.option("--text", default=None, help="The text, in the default language.")
@click.option("--target", default=None, help="Who it is addressed to, in the default language.")
@click.option(
    "--goal",
    type=click.IntRange(min=1, max=2**31 - 1),
    default=None,
    help="The goal: once reached, set the next one.",
)
@click.option("--closes-at", type=CLOSES_AT, default=None, help="A new close date (UTC if no zone)")
@click.option(
    "--default-lang",
    default=None,
    help="Make another language the default (its translation, if any, swaps with the text).",
)
def petition_edit(
    slug: str,
    title: str | None,
    text: str | None,
    target: str | None,
    goal: int | None,
    closes_at: datetime | None,
    default_lang: str | None,
) -> None:
    """Change a petition's text, goal, close date or default language."""
    given: dict[str, Any] = {
        "title": title,
        "body": text,
        "target": target,
        "goal": goal,
        "closes_at": utc(closes_at),
        "default_lang": default_lang,
    }
    changes: PetitionChanges = {k: v for k, v in given.items() if v is not None}  # type: ignore[assignment]
    if not changes:
        raise click.UsageError("give at least one thing to change")

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await update_petition(conn, actor=cli_actor(), slug=slug, changes=changes)

    edited = with_connection(action)
    click.echo(f"petition {slug} edited: goal {edited.goal}, written in {edited.default_lang}")


@petition.command("translate")
@click.argument("slug")
@click.option("--lang", required=True, help="The language, e.g. fr, ar, ru.")
@click.option("--title", default=None, help="The title in that language.")
@click.option("--text", default=None, help="The text in that language.")
@click.option("--target", default=None, help="Who it is addressed to, in that language.")
@click.option(
    "--file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='A UTF-8 JSON file {"title": ..., "text": ..., "target": ...}; options given win.',
)
@click.option("--remove", is_flag=True, help="Remove the petition's text in that language.")
def petition_translate(
    slug: str,
    lang: str,
    title: str | None,
    text: str | None,
    target: str | None,
    from_file: Path | None,
    remove: bool,
) -> None:
    """Add or replace a petition's title, text and target in a language (in its default
    language: its own text), or remove them (--remove)."""
    if remove:

        async def removing(conn: asyncpg.Connection) -> ManagedPetition:
            return await remove_translation(conn, actor=cli_actor(), slug=slug, lang=lang)

        with_connection(removing)
        click.echo(f"petition {slug}: {lang} removed")
        return
    given = _translation_file(from_file) if from_file else {}
    given.update({k: v for k, v in {"title": title, "text": text, "target": target}.items() if v})
    if not given.get("title"):
        raise click.UsageError("give --title (or a file with a title)")

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await translate_petition(
            conn,
            actor=cli_actor(),
            slug=slug,
            lang=lang,
            title=given["title"],
            body=given.get("text", ""),
            target=given.get("target", ""),
        )

    languages = with_connection(action).languages
    click.echo(f"petition {slug} is written in: {' '.join(languages)}")


def _translation_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {type(exc).__name__}", param_hint="--file") from None
    if not isinstance(data, dict) or not all(
        key in ("title", "text", "target") and isinstance(value, str) for key, value in data.items()
    ):
        raise click.BadParameter(
            f'{path}: must be a JSON object with "title", "text" and "target" strings',
            param_hint="--file",
        )
    return data
