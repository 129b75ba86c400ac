"""The public petition a request's path names (``{slug}``): the petition, the widget,
the counts and the live stream all answer for it, or 404."""

from __future__ import annotations

from aiohttp import web

from countersign_core.caching import MISSING
from countersign_domain.errors import PetitionNotFound
from countersign_domain.petitions import Petition
from petition_api import appkeys as keys


async def public_petition(request: web.Request) -> Petition:
    """The petition of the path's slug; PetitionNotFound if unknown or a draft."""
    directory = request.app[keys.PETITIONS]
    slug = request.match_info["slug"]
    # Most requests find it in memory: no coroutine for them.
    petition = directory.cached(slug)
    if petition is MISSING:
        petition = await directory.get(slug)
    if petition is None or not petition.is_public:
        raise PetitionNotFound()
    return petition
