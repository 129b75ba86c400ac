"""The partner API: a partner's key on the sign endpoint, and its own figures.

The partners themselves (keys, origins, the cached directory) live in
``countersign_domain.partners``; this module is the HTTP door to them.
"""

from __future__ import annotations

from aiohttp import web
from marshmallow import RAISE, Schema, fields

from counter_worker.counts import read_source_count
from countersign_core.connections import TRANSIENT_ERRORS
from countersign_domain.errors import (
    CountsUnavailable,
    PetitionNotFound,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from countersign_domain.partners import Partner
from countersign_domain.petitions import Petition
from petition_api import appkeys as keys
from petition_api.openapi import PARTNER_KEY, Reply, documented
from petition_api.schemas import valid_slug


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, headers={"WWW-Authenticate": "Bearer"})


async def authenticated_partner(request: web.Request) -> Partner | None:
    """The partner whose key the request carries; None when it carries no Authorization.

    A malformed, unknown or revoked key is a 401: a partner's form must not quietly turn
    into anonymous signing when its key stops working.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("use Authorization: Bearer <partner key>")
    partner = await request.app[keys.PARTNERS].by_key(key.strip())
    if partner is None:
        raise _unauthorized("the partner key is not valid (wrong or revoked)")
    return partner


class PartnerCountsQuery(Schema):
    class Meta:
        unknown = RAISE

    petition = fields.String(
        required=True,
        validate=valid_slug,
        metadata={"description": "The petition's slug."},
    )


class PartnerCountsSchema(Schema):
    petition = fields.String(required=True)
    source = fields.String(required=True)
    total = fields.Integer(required=True)


class PartnerValidationsSchema(Schema):
    petition = fields.String(required=True)
    source = fields.String(required=True)
    confirmed = fields.Integer(required=True)
    pending = fields.Integer(required=True)


PARTNER_PROBLEMS = (Unauthorized, PetitionNotFound, ValidationFailed, ServiceUnavailable)


_query_schema = PartnerCountsQuery()


async def _partner_and_petition(request: web.Request) -> tuple[Partner, Petition]:
    """The calling partner and the petition its ``?petition=slug`` names."""
    partner = await authenticated_partner(request)
    if partner is None:
        raise _unauthorized("this endpoint needs Authorization: Bearer <partner key>")
    query = _query_schema.load(dict(request.query))
    petition = await request.app[keys.PETITIONS].get(query["petition"])
    if petition is None or not petition.is_public:
        raise PetitionNotFound()
    return partner, petition


@documented(
    "How many counted signatures the partner brought to a petition",
    tags=("partners",),
    security=PARTNER_KEY,
    query=PartnerCountsQuery,
    responses={
        200: Reply("The live count of the partner's source.", PartnerCountsSchema),
    },
    problems=(*PARTNER_PROBLEMS, CountsUnavailable),
)
async def partner_counts(request: web.Request) -> web.Response:
    """How many counted signatures carry the partner's source on one petition."""
    partner, petition = await _partner_and_petition(request)
    try:
        total = await read_source_count(
            request.app[keys.REDIS], request.app[keys.LAYOUT], petition.id, partner.source_code
        )
    except TRANSIENT_ERRORS:
        raise ServiceUnavailable("live counts are unavailable; try again shortly") from None
    if total is None:
        raise CountsUnavailable()
    return web.json_response(
        {"petition": petition.slug, "source": partner.source_code, "total": total},
        headers={"Cache-Control": "no-store", "Vary": "Authorization"},
    )


# Signatures still standing (not erased, not invalidated), split by confirmation.
VALIDATIONS = """
SELECT count(*) FILTER (WHERE confirmed_at IS NOT NULL) AS confirmed,
       count(*) FILTER (WHERE confirmed_at IS NULL) AS pending
FROM signatures
WHERE petition_id = $1 AND source = $2 AND erased_at IS NULL AND invalidated_at IS NULL
"""


@documented(
    "How many of the partner's signatures are confirmed by email, and how many wait",
    tags=("partners",),
    security=PARTNER_KEY,
    query=PartnerCountsQuery,
    responses={
        200: Reply("Counts only: nothing about who signed.", PartnerValidationsSchema),
    },
    problems=PARTNER_PROBLEMS,
)
async def partner_validations(request: web.Request) -> web.Response:
    """How many of the partner's signatures are confirmed by email, and how many wait.

    Counts only: a partner learns nothing about who signed. Read from Postgres, since
    pending signatures never reach the live counters.
    """
    partner, petition = await _partner_and_petition(request)
    row = await request.app[keys.DB].fetchrow(VALIDATIONS, petition.id, partner.source_code)
    return web.json_response(
        {
            "petition": petition.slug,
            "source": partner.source_code,
            "confirmed": row["confirmed"],
            "pending": row["pending"],
        },
        headers={"Cache-Control": "no-store", "Vary": "Authorization"},
    )
