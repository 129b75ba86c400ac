"""Where a petition may be signed from: web origins, as browsers send them in ``Origin``.

A petition allows its own origins (or ``*``) and those of the active partners granted it
(``countersign_domain.partners.grant_petition``), no other partner's: a petition's
answers never tell which other sites are partners. The API's CORS grants, its refusal of
cross-site signing and the embed page's frame-ancestors read these rules from here; a
petition's origins are written by ``countersign_domain.petitions`` like its other fields.
"""

from __future__ import annotations

import re

import asyncpg
from cachetools import TTLCache
from yarl import URL

from countersign_core.connections import within

ANY_ORIGIN = "*"

# What a normalised origin looks like; anything else (a row edited by hand, say) is
# ignored rather than written into a header.
ORIGIN_SHAPE = re.compile(
    r"^https?://[a-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?$"
)

# The petition's own origins and its granted, active partners'.
SELECT_PETITION_ORIGINS = """
SELECT p.allowed_origins || ARRAY(
    SELECT origin
    FROM partner_grants g
    JOIN partners pa ON pa.id = g.partner_id AND pa.revoked_at IS NULL
    CROSS JOIN unnest(pa.allowed_origins) AS origin
    WHERE g.petition_id = p.id
)
FROM petitions p WHERE p.slug = $1
"""


def normalise_origin(value: str, *, allow_any: bool = False) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin``; ValueError otherwise."""
    value = value.strip()
    if allow_any and value == ANY_ORIGIN:
        return value
    url = URL(value)
    if (
        url.scheme not in ("http", "https")
        or not url.raw_host
        or url.user is not None
        or url.path not in ("", "/")
        or url.query_string
        or url.fragment
    ):
        raise ValueError(f"not a web origin (like https://example.org): {value!r}")
    return str(url.origin())


class OriginPolicy:
    """Which origins may call a petition's endpoints from the browser, cached for a few
    seconds like the petitions themselves."""

    def __init__(
        self, pool: asyncpg.Pool, *, ttl: float = 2.0, timeout: float | None = None
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._by_slug: TTLCache[str, frozenset[str]] = TTLCache(maxsize=10_000, ttl=ttl)

    async def origins(self, slug: str) -> frozenset[str]:
        """The petition's origins and its granted partners' (may contain ``*``)."""
        try:
            return self._by_slug[slug]
        except KeyError:
            pass
        stored = await within(self._timeout, self._pool.fetchval(SELECT_PETITION_ORIGINS, slug))
        origins = frozenset(o for o in stored or () if o == ANY_ORIGIN or ORIGIN_SHAPE.match(o))
        self._by_slug[slug] = origins
        return origins

    async def allows(self, slug: str, origin: str) -> bool:
        origins = await self.origins(slug)
        return ANY_ORIGIN in origins or origin in origins
