"""The partner API: a partner's key on the sign endpoint, and its own figures (on the
petitions granted it).

The partners themselves (keys, origins, the cached directory) live in
``countersign_domain.partners``; this module is the HTTP door to them.
"""

from __future__ import annotations

from aiohttp import web
from marshmallow import RAISE, Schema, fields

from countersign_core.connections import within
from countersign_domain.errors import (
    PetitionNotFound,
    PetitionNotGranted,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from countersign_domain.partners import Partner, PartnerFigures, partner_figures
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


PARTNER_PROBLEMS = (
    Unauthorized,
    PetitionNotGranted,
    PetitionNotFound,
    ValidationFailed,
    ServiceUnavailable,
)


_query_schema = PartnerCountsQuery()


async def require_grant(request: web.Request, partner: Partner, petition: Petition) -> None:
    """PetitionNotGranted unless staff granted the partner this petition."""
    if not await request.app[keys.PARTNERS].granted(partner, petition.id):
        raise PetitionNotGranted()


async def _figures(request: web.Request) -> tuple[Partner, Petition, PartnerFigures]:
    """The calling partner, the petition its ``?petition=slug`` names, and its figures
    there."""
    partner = await authenticated_partner(request)
    if partner is None:
        raise _unauthorized("this endpoint needs Authorization: Bearer <partner key>")
    query = _query_schema.load(dict(request.query))
    petition = await request.app[keys.PETITIONS].get(query["petition"])
    if petition is None or not petition.is_public:
        raise PetitionNotFound()
    await require_grant(request, partner, petition)
    figures = await within(
        request.app[keys.SETTINGS].api.backend_timeout,
        partner_figures(request.app[keys.DB], partner.id, petition.id),
    )
    return partner, petition, figures


PRIVATE = {"Cache-Control": "no-store", "Vary": "Authorization"}

FIGURES_TEXT = (
    "Counts only, nothing about who signed, and the same whether or not a submitted "
    "address had signed before: a partner's figures count its own submissions (each "
    "address its code came with, by its key or its widget), each confirmed by its own "
    "email, never the petition's signatures."
)


@documented(
    "How many counted signatures the partner brought to a petition",
    description=FIGURES_TEXT,
    tags=("partners",),
    security=PARTNER_KEY,
    query=PartnerCountsQuery,
    responses={
        200: Reply("The partner's confirmed submissions that count.", PartnerCountsSchema),
    },
    problems=PARTNER_PROBLEMS,
)
async def partner_counts(request: web.Request) -> web.Response:
    partner, petition, figures = await _figures(request)
    return web.json_response(
        {"petition": petition.slug, "source": partner.source_code, "total": figures.confirmed},
        headers=PRIVATE,
    )


@documented(
    "How many of the partner's submissions are confirmed by email, and how many wait",
    description=FIGURES_TEXT,
    tags=("partners",),
    security=PARTNER_KEY,
    query=PartnerCountsQuery,
    responses={
        200: Reply("Counts only: nothing about who signed.", PartnerValidationsSchema),
    },
    problems=PARTNER_PROBLEMS,
)
async def partner_validations(request: web.Request) -> web.Response:
    partner, petition, figures = await _figures(request)
    return web.json_response(
        {
            "petition": petition.slug,
            "source": partner.source_code,
            "confirmed": figures.confirmed,
            "pending": figures.pending,
        },
        headers=PRIVATE,
    )
