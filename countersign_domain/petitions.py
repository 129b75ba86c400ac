"""Petitions: the rows, the rules of changing them, and a short-lived cache for readers.

Every door that changes a petition (the staff API, the ``countersign`` command, ``dev``)
calls ``create_petition``, ``update_petition`` or ``translate_petition``, allowed origins
included: the status transitions and the close-date rule are checked here, and the audit
entry is written here, in the same transaction as the change.

A petition speaks several languages: its row holds the title, text and target in its
default language (``default_lang``), and ``petition_translations`` one row per other
language. ``petition_in`` gives the text in a language; ``choose_language`` picks it as
every door does: an explicit choice, then the reader's browser, then the default.

The sign and counts paths look a petition up by slug on every request; the cache keeps
that off Postgres. A status change is seen within ``ttl`` seconds, and the signature
INSERT itself re-checks that the petition is open, so a stale cache cannot let a
signature into a closed petition.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

import asyncpg

from countersign_core.caching import FreshValues, Missing
from countersign_core.connections import transaction, within
from countersign_core.settings import PrivacyConfig
from countersign_core.texts import negotiate
from countersign_domain import audit, patterns
from countersign_domain.errors import (
    ClosesAtPassed,
    DefaultLanguageKept,
    InvalidStatusTransition,
    PetitionExists,
    PetitionNotFound,
    TranslationNotFound,
    ValidationFailed,
)

# Status moves staff may make; staying in the same status is always allowed.
TRANSITIONS = frozenset({("draft", "open"), ("open", "closed"), ("closed", "open")})
# A new petition starts as a draft, or open at once; it cannot be born closed.
NEW_STATUSES = ("draft", "open")
STATUSES = ("draft", "open", "closed")

# How the staff API and the audit log name a field whose column is named otherwise.
PUBLIC_FIELD_NAMES = {"body": "text"}

_LANGUAGE = re.compile(patterns.PETITION_LANGUAGE)

# Each query reads the columns and the other languages' texts of the petition of the row,
# as one JSON object.
_SELECT_PUBLIC = """
SELECT id, slug, title, body, target, goal, next_goal, status, created_at, closes_at,
       require_confirmation, data_controller, privacy_policy_url, default_lang,
       (%s) AS translations
"""
_SELECT_MANAGED = """
SELECT id, slug, title, body, target, goal, next_goal, status, created_at, closes_at,
       allowed_origins, closed_at, require_confirmation, data_controller, privacy_policy_url,
       default_lang, (%s) AS translations
"""
_RETURNING_MANAGED = """
RETURNING id, slug, title, body, target, goal, next_goal, status, created_at, closes_at,
          allowed_origins, closed_at, require_confirmation, data_controller, privacy_policy_url,
          default_lang, (%s) AS translations
"""
_TRANSLATIONS = """
SELECT coalesce(json_object_agg(t.lang, json_build_object(
           'title', t.title, 'body', t.body, 'target', t.target)), '{}')::text
FROM petition_translations t WHERE t.petition_id = petitions.id
"""
_SELECT_PUBLIC %= _TRANSLATIONS
_SELECT_MANAGED %= _TRANSLATIONS
_RETURNING_MANAGED %= _TRANSLATIONS

SELECT_BY_SLUG = _SELECT_PUBLIC + "FROM petitions WHERE slug = $1"
SELECT_BY_ID = _SELECT_PUBLIC + "FROM petitions WHERE id = $1"
# The open petitions, for the home page: newest first, at most $1.
LIST_OPEN = (
    _SELECT_PUBLIC
    + """FROM petitions WHERE status = 'open' AND (closes_at IS NULL OR closes_at > now())
ORDER BY created_at DESC, id DESC LIMIT $1"""
)

# Built from constant fragments only; values always travel as parameters.
SELECT_MANAGED = _SELECT_MANAGED + "FROM petitions WHERE slug = $1"
SELECT_MANAGED_FOR_UPDATE = SELECT_MANAGED + " FOR UPDATE"
LIST_MANAGED = _SELECT_MANAGED + "FROM petitions ORDER BY created_at DESC, id DESC"

INSERT_MANAGED = (
    """
INSERT INTO petitions (slug, title, body, target, goal, status, closes_at, allowed_origins,
                       require_confirmation, data_controller, privacy_policy_url, default_lang,
                       next_goal)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"""
    + _RETURNING_MANAGED
)

# A translation, added or replaced.
UPSERT_TRANSLATION = """
INSERT INTO petition_translations (petition_id, lang, title, body, target)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (petition_id, lang) DO UPDATE
SET title = excluded.title, body = excluded.body, target = excluded.target
"""
# The text in the default language: the row's own.
UPDATE_TEXT = "UPDATE petitions SET title = $2, body = $3, target = $4 WHERE id = $1"
DELETE_TRANSLATION = """
DELETE FROM petition_translations WHERE petition_id = $1 AND lang = $2
RETURNING title, body, target
"""

# NULL keeps a column as it is; closes_at and the privacy notice can be set to NULL, so
# each has its own flag.
UPDATE_MANAGED = (
    """
UPDATE petitions SET
    title = coalesce($2, title),
    body = coalesce($3, body),
    target = coalesce($4, target),
    goal = coalesce($5, goal),
    allowed_origins = coalesce($6, allowed_origins),
    closes_at = CASE WHEN $7 THEN $8 ELSE closes_at END,
    status = coalesce($9, status),
    require_confirmation = coalesce($10, require_confirmation),
    data_controller = CASE WHEN $11 THEN $12 ELSE data_controller END,
    privacy_policy_url = CASE WHEN $13 THEN $14 ELSE privacy_policy_url END,
    default_lang = coalesce($15, default_lang),
    next_goal = CASE WHEN $16 THEN $17 ELSE next_goal END
WHERE id = $1"""
    + _RETURNING_MANAGED
)


@dataclass(frozen=True)
class PetitionText:
    """What a reader reads of a petition, in one language."""

    lang: str
    title: str
    body: str
    target: str


def _fields_of(row: asyncpg.Record) -> dict[str, Any]:
    """A row's columns as the dataclasses' fields: the translations' JSON object read."""
    values = dict(row)
    values["translations"] = {
        lang: PetitionText(lang, **text)
        for lang, text in json.loads(values.get("translations") or "{}").items()
    }
    return values


@dataclass(frozen=True)
class Petition:
    id: int
    slug: str
    title: str
    body: str
    target: str
    goal: int
    # Shown as the goal once the counted total reaches ``goal`` (None: the goal stays).
    next_goal: int | None
    status: str
    created_at: datetime
    closes_at: datetime | None
    # Signatures count only once the signer confirms their address by email.
    require_confirmation: bool
    # Who holds the signers' data and where its privacy policy is, when not the
    # deployment's (``privacy_notice``).
    data_controller: str | None
    privacy_policy_url: str | None
    # The language of title, body and target; the others are in ``translations``.
    default_lang: str = field(default="en", kw_only=True)
    translations: Mapping[str, PetitionText] = field(default_factory=dict, kw_only=True)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Petition:
        return cls(**_fields_of(row))

    @property
    def languages(self) -> list[str]:
        """Every language the petition is written in: the default first."""
        return [self.default_lang, *sorted(set(self.translations) - {self.default_lang})]

    def privacy_notice(self, config: PrivacyConfig) -> PrivacyNotice:
        return PrivacyNotice.of(config, self.data_controller, self.privacy_policy_url)

    def shown_goal(self, total: int) -> int:
        """The goal the public figures show: the next goal once this one is reached."""
        if self.next_goal is not None and total >= self.goal:
            return self.next_goal
        return self.goal

    @property
    def is_public(self) -> bool:
        return self.status != "draft"

    @property
    def effective_status(self) -> str:
        """'closed' once the close date has passed, even before anyone updates the row."""
        if self.status == "open" and self.closes_at and self.closes_at <= datetime.now(UTC):
            return "closed"
        return self.status


@dataclass(frozen=True)
class ManagedPetition(Petition):
    """A petition as staff see it: the public fields and what only staff manage."""

    allowed_origins: list[str]
    closed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ManagedPetition:
        return cls(**_fields_of(row))


@dataclass(frozen=True)
class PrivacyNotice:
    """What signers are told beside the consent box, in every email and on the
    confirmation pages: who holds their data, and where its privacy policy is."""

    data_controller: str | None
    policy_url: str | None

    @classmethod
    def of(
        cls,
        config: PrivacyConfig,
        data_controller: str | None = None,
        policy_url: str | None = None,
    ) -> PrivacyNotice:
        """A petition's own notice, each part falling back to the deployment's."""
        return cls(data_controller or config.data_controller, policy_url or config.policy_url)


class PetitionChanges(TypedDict, total=False):
    """What to change; a field left out stays as it is (``closes_at: None`` clears it)."""

    title: str
    body: str
    target: str
    goal: int
    next_goal: int | None
    allowed_origins: list[str]
    closes_at: datetime | None
    status: str
    require_confirmation: bool
    data_controller: str | None
    privacy_policy_url: str | None
    # Another language becomes the default: its translation, if any, moves into the row
    # and the row's text becomes the translation of the former default.
    default_lang: str


# -- languages ------------------------------------------------------------------------------


def petition_in(petition: Petition, lang: str) -> PetitionText:
    """The petition's title, text and target in ``lang``; in its default language if it
    has no such translation."""
    return petition.translations.get(lang) or PetitionText(
        petition.default_lang, petition.title, petition.body, petition.target
    )


def choose_language(petition: Petition, explicit: Iterable[str | None], accepted: list[str]) -> str:
    """The petition's language for a reader, in the order every door uses: an explicit
    choice (``?lang=``, ``data-lang``, the signature's language), then the browser's
    ``Accept-Language`` (its tags, most wanted first), then the petition's default."""
    return negotiate([*explicit, *accepted], petition.languages, petition.default_lang)


def goal_reached(total: int, goal: int) -> bool:
    return total >= goal


def _check_language(lang: str, name: str = "lang") -> None:
    if not _LANGUAGE.fullmatch(lang):
        raise ValidationFailed(fields={name: [patterns.PETITION_LANGUAGE_RULE]})


# -- reading --------------------------------------------------------------------------------


async def fetch_petition(conn: asyncpg.Pool | asyncpg.Connection, slug: str) -> Petition | None:
    row = await conn.fetchrow(SELECT_BY_SLUG, slug)
    return Petition.from_row(row) if row else None


async def petition_by_id(
    conn: asyncpg.Pool | asyncpg.Connection, petition_id: int
) -> Petition | None:
    row = await conn.fetchrow(SELECT_BY_ID, petition_id)
    return Petition.from_row(row) if row else None


async def managed_petition(
    conn: asyncpg.Pool | asyncpg.Connection, slug: str, *, for_update: bool = False
) -> ManagedPetition:
    """The petition, drafts included; PetitionNotFound if there is none."""
    row = await conn.fetchrow(SELECT_MANAGED_FOR_UPDATE if for_update else SELECT_MANAGED, slug)
    if row is None:
        raise PetitionNotFound
    return ManagedPetition.from_row(row)


async def list_petitions(conn: asyncpg.Pool | asyncpg.Connection) -> list[ManagedPetition]:
    """Every petition, drafts included, newest first."""
    return [ManagedPetition.from_row(row) for row in await conn.fetch(LIST_MANAGED)]


async def list_open_petitions(
    conn: asyncpg.Pool | asyncpg.Connection, *, limit: int = 100
) -> list[Petition]:
    """The petitions taking signatures now, newest first."""
    return [Petition.from_row(row) for row in await conn.fetch(LIST_OPEN, limit)]


# -- the rules ------------------------------------------------------------------------------


def check_transition(current: str, status: str) -> None:
    """Refuse a status move that is not allowed (staying put always is)."""
    if status != current and (current, status) not in TRANSITIONS:
        raise InvalidStatusTransition(
            f"a {current} petition cannot become {status}; "
            "allowed: draft to open, open to closed, closed to open"
        )


def refuse_passed_close(closes_at: datetime | None) -> None:
    """A close date given must be in the future: one already passed is refused (409, not
    422: the same request was acceptable a moment earlier)."""
    if closes_at is not None and closes_at <= _now():
        raise ClosesAtPassed("closes_at has passed: give a later one (or null for none)")


def _check_slug(slug: str) -> None:
    if not re.fullmatch(patterns.SLUG, slug):
        raise ValidationFailed(fields={"slug": [patterns.SLUG_RULE]})


def _check_privacy(controller: str | None, url: str | None) -> None:
    """The privacy notice's parts, as the database's CHECK constraints take them."""
    refused: dict[str, list[str]] = {}
    if controller is not None and not 1 <= len(controller) <= 200:
        refused["data_controller"] = ["Length must be between 1 and 200."]
    if url is not None and (len(url) > 2000 or not re.fullmatch(patterns.POLICY_URL, url)):
        refused["privacy_policy_url"] = [patterns.POLICY_URL_RULE]
    if refused:
        raise ValidationFailed(fields=refused)


def _check_next_goal(goal: int, next_goal: int | None) -> None:
    """The next goal, when there is one, is above the goal (sql/014_next_goal.sql)."""
    if next_goal is not None and next_goal <= goal:
        raise ValidationFailed(
            f"next_goal must be above the goal ({goal})",
            fields={"next_goal": [f"Must be above the goal ({goal})."]},
        )


def _check_status(status: str, allowed: tuple[str, ...]) -> None:
    if status not in allowed:
        raise ValidationFailed(fields={"status": [f"Must be one of: {', '.join(allowed)}."]})


def _now() -> datetime:
    return datetime.now(UTC)


# -- changing -------------------------------------------------------------------------------


async def create_petition(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    slug: str,
    title: str,
    body: str = "",
    target: str = "",
    goal: int = 1000,
    next_goal: int | None = None,
    status: str = "draft",
    closes_at: datetime | None = None,
    allowed_origins: list[str] | None = None,
    require_confirmation: bool = True,
    data_controller: str | None = None,
    privacy_policy_url: str | None = None,
    default_lang: str = "en",
) -> ManagedPetition:
    """Create a petition (a draft, or open at once) and its ``petition.create`` entry.
    Raises PetitionExists, ClosesAtPassed, ValidationFailed."""
    _check_slug(slug)
    _check_status(status, NEW_STATUSES)
    _check_privacy(data_controller, privacy_policy_url)
    _check_language(default_lang, "default_lang")
    _check_next_goal(goal, next_goal)
    refuse_passed_close(closes_at)
    async with transaction(db) as conn:
        try:
            row = await conn.fetchrow(
                INSERT_MANAGED,
                slug,
                title,
                body,
                target,
                goal,
                status,
                closes_at,
                allowed_origins or [],
                require_confirmation,
                data_controller,
                privacy_policy_url,
                default_lang,
                next_goal,
            )
        except asyncpg.UniqueViolationError:
            raise PetitionExists from None
        petition = ManagedPetition.from_row(row)
        await audit.record(
            conn,
            actor,
            "petition.create",
            petition_id=petition.id,
            details={"status": petition.status},
        )
    return petition


async def update_petition(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, slug: str, changes: PetitionChanges
) -> ManagedPetition:
    """Change the fields given, and write the ``petition.update`` entry (which fields, and
    the status move if any). Raises PetitionNotFound, InvalidStatusTransition,
    ClosesAtPassed, ValidationFailed."""
    _check_privacy(changes.get("data_controller"), changes.get("privacy_policy_url"))
    refuse_passed_close(changes.get("closes_at"))
    if "default_lang" in changes:
        _check_language(changes["default_lang"], "default_lang")
    async with transaction(db) as conn:
        current = await managed_petition(conn, slug, for_update=True)
        changes = await _swap_default_language(conn, current, changes)
        status = changes.get("status", current.status)
        _check_status(status, STATUSES)
        check_transition(current.status, status)
        _check_next_goal(
            changes.get("goal", current.goal), changes.get("next_goal", current.next_goal)
        )
        closes_at = changes.get("closes_at", current.closes_at)
        if "status" in changes and status == "open" and closes_at and closes_at <= _now():
            raise ClosesAtPassed(
                "its close date has passed: set a later closes_at (or null) to open it"
            )
        row = await conn.fetchrow(
            UPDATE_MANAGED,
            current.id,
            changes.get("title"),
            changes.get("body"),
            changes.get("target"),
            changes.get("goal"),
            changes.get("allowed_origins"),
            "closes_at" in changes,
            changes.get("closes_at"),
            changes.get("status"),
            changes.get("require_confirmation"),
            "data_controller" in changes,
            changes.get("data_controller"),
            "privacy_policy_url" in changes,
            changes.get("privacy_policy_url"),
            changes.get("default_lang"),
            "next_goal" in changes,
            changes.get("next_goal"),
        )
        petition = ManagedPetition.from_row(row)
        details: dict[str, Any] = {
            "fields": sorted(PUBLIC_FIELD_NAMES.get(name, name) for name in changes)
        }
        if petition.status != current.status:
            details["status"] = {"from": current.status, "to": petition.status}
        await audit.record(conn, actor, "petition.update", petition_id=petition.id, details=details)
    return petition


async def _swap_default_language(
    conn: asyncpg.Connection, current: ManagedPetition, changes: PetitionChanges
) -> PetitionChanges:
    """When another language becomes the default and has a translation, that translation
    moves into the row (unless the change gives the row's text itself) and the row's
    text becomes the translation of the former default; without one, the row's text is
    only relabelled. The changes to make to the row."""
    new = changes.get("default_lang", current.default_lang)
    if new == current.default_lang:
        return changes
    moved = await conn.fetchrow(DELETE_TRANSLATION, current.id, new)
    if moved is None:
        return changes
    await conn.execute(
        UPSERT_TRANSLATION,
        current.id,
        current.default_lang,
        current.title,
        current.body,
        current.target,
    )
    return {**dict(moved), **changes}


async def translate_petition(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    slug: str,
    lang: str,
    title: str,
    body: str = "",
    target: str = "",
) -> ManagedPetition:
    """Add or replace the petition's title, text and target in ``lang`` (in its default
    language: its own text), with a ``petition.translate`` entry. Raises
    PetitionNotFound, ValidationFailed."""
    _check_language(lang)
    async with transaction(db) as conn:
        current = await managed_petition(conn, slug, for_update=True)
        if lang == current.default_lang:
            await conn.execute(UPDATE_TEXT, current.id, title, body, target)
        else:
            await conn.execute(UPSERT_TRANSLATION, current.id, lang, title, body, target)
        await audit.record(
            conn, actor, "petition.translate", petition_id=current.id, details={"lang": lang}
        )
        return await managed_petition(conn, slug)


async def remove_translation(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, slug: str, lang: str
) -> ManagedPetition:
    """Remove the petition's text in ``lang``, with a ``petition.translate`` entry.
    Raises PetitionNotFound, DefaultLanguageKept, TranslationNotFound."""
    async with transaction(db) as conn:
        current = await managed_petition(conn, slug, for_update=True)
        if lang == current.default_lang:
            raise DefaultLanguageKept()
        if await conn.fetchrow(DELETE_TRANSLATION, current.id, lang) is None:
            raise TranslationNotFound()
        await audit.record(
            conn,
            actor,
            "petition.translate",
            petition_id=current.id,
            details={"lang": lang, "removed": True},
        )
        return await managed_petition(conn, slug)


async def set_status(
    db: asyncpg.Pool | asyncpg.Connection, *, actor: str, slug: str, status: str
) -> ManagedPetition:
    """Open, close or reopen a petition: ``update_petition`` with the status alone."""
    return await update_petition(db, actor=actor, slug=slug, changes={"status": status})


# -- reading, cached ------------------------------------------------------------------------


class PetitionDirectory:
    """Petitions by slug, cached for a few seconds (unknown slugs too); a slug missing
    from the cache is read once however many requests ask for it meanwhile."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float = 2.0,
        size: int = 10_000,
        timeout: float | None = None,
    ) -> None:
        self._pool = pool
        self._cache: FreshValues[str, Petition | None] = FreshValues(ttl=ttl, size=size)
        self._timeout = timeout  # a hung Postgres must not hang the request (TimeoutError)

    def cached(self, slug: str) -> Petition | Missing | None:
        """What ``get`` would answer from memory now, or MISSING (then ``get``)."""
        return self._cache.fresh(slug)

    async def get(self, slug: str) -> Petition | None:
        async def read() -> Petition | None:
            return await within(self._timeout, fetch_petition(self._pool, slug))

        return await self._cache.get(slug, read)
