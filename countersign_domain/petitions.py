"""Petitions: the rows, the rules of changing them, and a short-lived cache for readers.

Every door that changes a petition (the staff API, the ``countersign`` command, ``dev``)
calls ``create_petition`` or ``update_petition``, allowed origins included: the status
transitions and the close-date rule are checked here, and the audit entry is written
here, in the same transaction as the change.

The sign and counts paths look a petition up by slug on every request; the cache keeps
that off Postgres. A status change is seen within ``ttl`` seconds, and the signature
INSERT itself re-checks that the petition is open, so a stale cache cannot let a
signature into a closed petition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

import asyncpg

from countersign_core.caching import FreshValues
from countersign_core.connections import transaction, within
from countersign_core.settings import PrivacyConfig
from countersign_domain import audit, patterns
from countersign_domain.errors import (
    ClosesAtPassed,
    InvalidStatusTransition,
    PetitionExists,
    PetitionNotFound,
    ValidationFailed,
)

# Status moves staff may make; staying in the same status is always allowed.
TRANSITIONS = frozenset({("draft", "open"), ("open", "closed"), ("closed", "open")})
# A new petition starts as a draft, or open at once; it cannot be born closed.
NEW_STATUSES = ("draft", "open")
STATUSES = ("draft", "open", "closed")

# How the staff API and the audit log name a field whose column is named otherwise.
PUBLIC_FIELD_NAMES = {"body": "text"}

_SELECT_PUBLIC = """
SELECT id, slug, title, body, target, goal, next_goal, status, created_at, closes_at,
       require_confirmation, data_controller, privacy_policy_url
FROM petitions"""
SELECT_BY_SLUG = _SELECT_PUBLIC + " WHERE slug = $1"
SELECT_BY_ID = _SELECT_PUBLIC + " WHERE id = $1"

_MANAGED_COLUMNS = """id, slug, title, body, target, goal, next_goal, status, created_at, closes_at,
       require_confirmation, data_controller, privacy_policy_url, allowed_origins, closed_at
"""
_SELECT_MANAGED = "SELECT " + _MANAGED_COLUMNS
_RETURNING_MANAGED = "RETURNING " + _MANAGED_COLUMNS

# Built from constant fragments only; values always travel as parameters.
SELECT_MANAGED = _SELECT_MANAGED + "FROM petitions WHERE slug = $1"
SELECT_MANAGED_FOR_UPDATE = SELECT_MANAGED + " FOR UPDATE"
LIST_MANAGED = _SELECT_MANAGED + "FROM petitions ORDER BY created_at DESC, id DESC"

INSERT_MANAGED = (
    """
INSERT INTO petitions (slug, title, body, target, goal, status, closes_at, allowed_origins,
                       require_confirmation, data_controller, privacy_policy_url, next_goal)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
    + _RETURNING_MANAGED
)

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
    next_goal = CASE WHEN $15 THEN $16 ELSE next_goal END
WHERE id = $1
"""
    + _RETURNING_MANAGED
)


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

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Petition:
        return cls(**dict(row))

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
        return cls(**dict(row))


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
) -> ManagedPetition:
    """Create a petition (a draft, or open at once) and its ``petition.create`` entry.
    Raises PetitionExists, ClosesAtPassed, ValidationFailed."""
    _check_slug(slug)
    _check_status(status, NEW_STATUSES)
    _check_privacy(data_controller, privacy_policy_url)
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
    async with transaction(db) as conn:
        current = await managed_petition(conn, slug, for_update=True)
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

    async def get(self, slug: str) -> Petition | None:
        async def read() -> Petition | None:
            return await within(self._timeout, fetch_petition(self._pool, slug))

        return await self._cache.get(slug, read)
