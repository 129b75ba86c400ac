"""``countersign petition``: list, show, create and edit petitions and their translations,
move them through their statuses, and set their allowed origins. The rules and the audit
entries are the domain's (``countersign_domain.petitions``), and the fields are checked by
the staff API's own schema: what the API refuses, the command refuses alike."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import click
from marshmallow import ValidationError

from countersign.cli.common import (
    origins_callback,
    refuse,
    table,
    utc,
    when,
    with_connection,
)
from countersign_domain.audit import cli_actor
from countersign_domain.errors import ValidationFailed
from countersign_domain.petitions import (
    PUBLIC_FIELD_NAMES,
    ManagedPetition,
    PetitionChanges,
    create_petition,
    list_petitions,
    managed_petition,
    remove_translation,
    set_status,
    translate_petition,
    update_petition,
)
from petition_api.admin.schemas import PetitionUpdateSchema, TranslationSchema

CLOSES_AT = click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])

NO_CONFIRMATION_WARNING = (
    "countersign: warning: without confirmation a signature counts at once, so anyone who "
    "signs someone else's address and watches the total can tell whether that address had "
    "signed already; only petitions that require confirmation are safe against this "
    '(README, "What an answer can reveal")'
)


@click.group()
def petition() -> None:
    """List, show, create, edit and translate petitions; open or close them; set where
    they may be signed from."""


@petition.command("list")
def petition_list() -> None:
    """Every petition, drafts included, newest first."""
    found = with_connection(list_petitions)
    if not found:
        click.echo("no petitions")
        return
    click.echo(
        table(
            ["slug", "status", "goal", "confirmation", "created", "title"],
            [
                [
                    p.slug,
                    p.effective_status,
                    f"{p.goal:,}",
                    "on" if p.require_confirmation else "off",
                    f"{p.created_at:%Y-%m-%d}",
                    p.title,
                ]
                for p in found
            ],
        )
    )


@petition.command("show")
@click.argument("slug")
def petition_show(slug: str) -> None:
    """A petition's fields, as the staff API answers them, its text last."""

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await managed_petition(conn, slug)

    found = with_connection(action)
    fields = [
        ("slug", found.slug),
        ("title", found.title),
        ("status", found.effective_status),
        ("target", found.target or "-"),
        ("goal", f"{found.goal:,}"),
        ("next goal", f"{found.next_goal:,}" if found.next_goal else "-"),
        ("confirmation", "on" if found.require_confirmation else "off"),
        ("closes at", when(found.closes_at)),
        ("closed at", when(found.closed_at)),
        ("created", when(found.created_at)),
        ("origins", " ".join(found.allowed_origins) or "-"),
        ("languages", " ".join(found.languages)),
    ]
    click.echo("\n".join(f"{name:<14}{value}" for name, value in fields))
    click.echo(f"text:\n{found.body}" if found.body else "text: -")


@petition.command("create")
@click.option("--slug", required=True, help="URL name: lowercase letters, digits, '-'.")
@click.option("--title", required=True)
@click.option("--text", default="", help="The petition's text.")
@click.option("--target", default="", help="Who the petition is addressed to.")
@click.option("--goal", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--next-goal",
    type=click.IntRange(min=1),
    default=None,
    help="Shown as the goal once the total reaches --goal; above it.",
)
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
    next_goal: int | None,
    closes_at: datetime | None,
    open_now: bool,
    confirmation: bool,
    data_controller: str | None,
    privacy_policy_url: str | None,
    default_lang: str,
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
            next_goal=next_goal,
            status="open" if open_now else "draft",
            closes_at=utc(closes_at),
            require_confirmation=confirmation,
            data_controller=data_controller,
            privacy_policy_url=privacy_policy_url,
            default_lang=default_lang,
        )

    created = with_connection(action)
    click.echo(f"created petition {created.slug} ({created.status})")


@petition.command("edit")
@click.argument("slug")
@click.option("--title", default=None, help="The title, in the default language.")
@click.option("--text", default=None, help="The petition's text, in the default language.")
@click.option("--target", default=None, help="Who it is addressed to, in the default language.")
@click.option("--goal", type=int, default=None, help="The goal: once reached, set the next one.")
@click.option(
    "--next-goal",
    type=int,
    default=None,
    help="Shown as the goal once the total reaches the goal; above it.",
)
@click.option("--no-next-goal", is_flag=True, help="Remove the next goal.")
@click.option(
    "--closes-at",
    type=CLOSES_AT,
    default=None,
    help="When it stops taking signatures (UTC if no zone); in the future.",
)
@click.option("--no-closes-at", is_flag=True, help="Remove the close date.")
@click.option(
    "--confirmation/--no-confirmation",
    default=None,
    help="Count a signature only once the signer confirms their address by email.",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    callback=origins_callback(allow_any=True),
    help="A web origin that may embed it and sign from the browser (* for any); "
    "repeatable; replaces the current ones.",
)
@click.option("--no-origins", is_flag=True, help="Remove every origin of its own.")
@click.option(
    "--default-lang",
    default=None,
    help="Make another language the default (its translation, if any, swaps with the text).",
)
@click.option("--data-controller", default=None, help="Who holds the signers' data.")
@click.option("--privacy-policy-url", default=None, help="Where the privacy policy is.")
def petition_edit(
    slug: str,
    title: str | None,
    text: str | None,
    target: str | None,
    goal: int | None,
    next_goal: int | None,
    no_next_goal: bool,
    closes_at: datetime | None,
    no_closes_at: bool,
    confirmation: bool | None,
    origins: list[str],
    no_origins: bool,
    default_lang: str | None,
    data_controller: str | None,
    privacy_policy_url: str | None,
) -> None:
    """Change the fields given, and only those (audited). Its status changes with
    `petition open` and `petition close`, its translations with `petition translate`."""
    if closes_at and no_closes_at:
        raise click.UsageError("give --closes-at or --no-closes-at, not both")
    if origins and no_origins:
        raise click.UsageError("give --origin or --no-origins, not both")
    if next_goal is not None and no_next_goal:
        raise click.UsageError("give --next-goal or --no-next-goal, not both")
    given: dict[str, Any] = {
        name: value
        for name, value in {
            "title": title,
            "text": text,
            "target": target,
            "goal": goal,
            "next_goal": next_goal,
            "require_confirmation": confirmation,
            "allowed_origins": origins or None,
            "default_lang": default_lang,
            "data_controller": data_controller,
            "privacy_policy_url": privacy_policy_url,
        }.items()
        if value is not None
    }
    if closes_at or no_closes_at:
        stamp = utc(closes_at)
        given["closes_at"] = stamp.isoformat() if stamp else None
    if no_origins:
        given["allowed_origins"] = []
    if no_next_goal:
        given["next_goal"] = None
    if not given:
        raise click.UsageError("nothing to change: give at least one option")
    try:
        changes = cast(PetitionChanges, PetitionUpdateSchema().load(given))
    except ValidationError as exc:
        refuse(ValidationFailed(fields=cast(dict[str, Any], exc.messages)))

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await update_petition(conn, actor=cli_actor(), slug=slug, changes=changes)

    with_connection(action)
    names = sorted(PUBLIC_FIELD_NAMES.get(name, name) for name in changes)
    click.echo(f"petition {slug} changed: {', '.join(names)}")


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
    try:
        # The staff API's own schema: what it refuses, the command refuses alike.
        loaded = cast(dict[str, str], TranslationSchema().load(given))
    except ValidationError as exc:
        refuse(ValidationFailed(fields=cast(dict[str, Any], exc.messages)))

    async def action(conn: asyncpg.Connection) -> ManagedPetition:
        return await translate_petition(conn, actor=cli_actor(), slug=slug, lang=lang, **loaded)

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
