"""Reading the live counters and their update messages: the API's only way into the
worker's key layout (import-linter holds it to this module)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from counter_worker.keys import KeyLayout
from countersign_core.connections import RedisClient

__all__ = ["CountsUpdate", "KeyLayout", "LiveCounts", "fold_small_groups", "read_counts"]

_SEPARATOR = ":"


@dataclass(frozen=True)
class CountsUpdate:
    """The message the worker publishes on ``KeyLayout.updates_channel`` after every
    change: ``<petition id>:<total>``. The worker's scripts write it (``lua``), the API's
    live streams read it (``decode``)."""

    petition_id: int
    total: int

    def encode(self) -> str:
        return f"{self.petition_id}{_SEPARATOR}{self.total}"

    @staticmethod
    def lua(petition_id: str, total: str) -> str:
        """The Lua expression that builds the message from two Lua expressions."""
        return f"{petition_id} .. '{_SEPARATOR}' .. {total}"

    @classmethod
    def decode(cls, data: str) -> CountsUpdate | None:
        """The update a message carries; None for anything else on the channel."""
        petition_id, _, total = data.partition(_SEPARATOR)
        if not (petition_id.isdigit() and total.lstrip("-").isdigit()):
            return None
        return cls(int(petition_id), int(total))


@dataclass(frozen=True)
class LiveCounts:
    total: int
    countries: dict[str, int]
    sources: dict[str, int]
    updated_at: datetime | None

    def public_countries(self, breakdown_min: int) -> list[tuple[str, int]]:
        """The countries as the public may see them (``fold_small_groups``)."""
        return fold_small_groups(self.countries, breakdown_min)


# The code of the entry that stands for every group too small to show on its own.
OTHER = "other"


def fold_small_groups(groups: Mapping[str, int], minimum: int) -> list[tuple[str, int]]:
    """A public breakdown: the groups of at least ``minimum``, largest first (ties in code
    order, so output is stable), then every smaller group folded into one ``("other",
    their sum)`` entry, last; ``minimum`` 0 shows every group. A group of one signature
    (a rare country) would otherwise tell whoever watches it that an address signed."""
    shown = sorted(
        ((code, n) for code, n in groups.items() if n >= minimum),
        key=lambda item: (-item[1], item[0]),
    )
    folded = sum(n for n in groups.values() if n < minimum)
    return [*shown, (OTHER, folded)] if folded else shown


async def read_counts(redis: RedisClient, layout: KeyLayout, petition_id: int) -> LiveCounts | None:
    """The petition's counters in one round trip, or None while they are not built.

    None means Redis does not (yet, or any more) hold counters equal to Postgres: a new
    petition, or Redis flushed; the worker rebuilds them within moments.
    """
    keys = layout.petition(petition_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.exists(keys.built)
        pipe.get(keys.total)
        pipe.hgetall(keys.countries)
        pipe.hgetall(keys.sources)
        pipe.get(keys.updated_at)
        built, total, countries, sources, updated = await pipe.execute()
    if not built:
        return None
    return LiveCounts(
        total=int(total or 0),
        countries={code: int(n) for code, n in countries.items()},
        sources={code: int(n) for code, n in sources.items()},
        updated_at=datetime.fromtimestamp(float(updated), UTC) if updated else None,
    )
