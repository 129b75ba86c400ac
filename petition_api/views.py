"""Public HTTP handlers: petitions, signing, counts, health."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from aiohttp import web
from marshmallow import ValidationError

from countersign.connections import TRANSIENT_ERRORS
from petition_api import appkeys as keys
from petition_api.errors import (
    ApiError,
    counts_unavailable,
    petition_not_found,
    unavailable,
    validation_failed,
)
from petition_api.partners import authenticated_partner
from petition_api.petitions import Petition
from petition_api.schemas import PetitionSchema, SignatureSchema
from petition_api.signing import BackendUnavailable, NewSignature, SignStatus

_signature_schema = SignatureSchema()
_petition_schema = PetitionSchema()

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/petitions/{slug}", get_petition)
    app.router.add_post("/v1/petitions/{slug}/signatures", sign)
    app.router.add_get("/v1/petitions/{slug}/counts", get_counts)


async def public_petition(request: web.Request) -> Petition:
    petition = await request.app[keys.PETITIONS].get(request.match_info["slug"])
    if petition is None or not petition.is_public:
        raise petition_not_found()
    return petition


async def get_petition(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    body = _petition_schema.dump(petition)
    body["status"] = petition.effective_status
    return web.json_response(body)


async def sign(request: web.Request) -> web.Response:
    partner = await authenticated_partner(request)
    petition = await public_petition(request)
    if petition.effective_status != "open":
        raise ApiError(409, "petition_closed", "this petition is not taking signatures")
    data = await _read_body(request)
    if partner is not None:
        # A partner's signatures carry its own code, whatever the body says.
        data.pop("source", None)
    try:
        fields = _signature_schema.load(data)
    except ValidationError as exc:
        raise validation_failed(cast(dict[str, Any], exc.messages)) from None
    if fields["website"]:
        # The honeypot was filled in: a bot. Answer as for anyone, store nothing.
        return _accepted("pending_confirmation" if petition.require_confirmation else "counted")

    hasher = request.app[keys.HASHER]
    signature = NewSignature(
        petition_id=petition.id,
        name=fields["name"],
        email=fields["email"],
        email_hash=hasher.email(fields["email"]),
        country=fields["country"],
        postal_code=fields["postal_code"],
        source=partner.source_code if partner is not None else fields["source"],
        consent_updates=fields["consent_updates"],
        ip_hash=hasher.ip(request.remote) if request.remote else None,
        language=request.app[keys.TEXTS].negotiate(
            fields["language"], request.headers.get("Accept-Language")
        ),
    )
    try:
        status = await request.app[keys.WRITER].write(signature)
    except BackendUnavailable:
        raise unavailable("the signature could not be recorded; try again shortly") from None
    if status is None:
        raise ApiError(409, "petition_closed", "this petition is not taking signatures")
    # The same answer whether the address is new, had signed already, or had confirmed
    # already: nobody can use this endpoint to find out whether someone signed.
    return _accepted(status)


def _accepted(status: SignStatus) -> web.Response:
    """201 for a signature that counts; 202 for one that counts once confirmed."""
    return web.json_response({"status": status}, status=201 if status == "counted" else 202)


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "the body must be a JSON object")
        return data
    if request.content_type in FORM_TYPES:
        form = await request.post()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/json or application/x-www-form-urlencoded",
    )


async def get_counts(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    try:
        rendered = await request.app[keys.COUNTS].render(petition)
    except TRANSIENT_ERRORS:
        raise unavailable("live counts are unavailable; try again shortly") from None
    if rendered is None:
        raise counts_unavailable()
    headers = {
        "Cache-Control": f"public, max-age={request.app[keys.SETTINGS].counts_max_age}",
        "ETag": f'"{rendered.etag}"',
    }
    if any(candidate.value == rendered.etag for candidate in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=rendered.body, content_type="application/json", headers=headers)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when Postgres and Redis both answer within a second."""

    async def check(probe: Any) -> str:
        try:
            await asyncio.wait_for(probe, timeout=1.0)
        except TRANSIENT_ERRORS:
            return "unavailable"
        return "ok"

    status = {
        "postgres": await check(request.app[keys.DB].fetchval("SELECT 1")),
        "redis": await check(request.app[keys.REDIS].ping()),
    }
    ready = all(value == "ok" for value in status.values())
    return web.json_response(status, status=200 if ready else 503)
