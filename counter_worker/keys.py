"""The Redis key layout: the one place that spells key names.

Every key of a petition carries the hash tag ``{p<id>}`` so that all of them live in one
Redis Cluster slot and the Lua scripts that touch several of them stay legal there. (The
API's rate limits share the prefix; their keys are spelled in petition_api/ratelimit.py.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PetitionKeys:
    total: str
    countries: str
    sources: str
    updated_at: str
    # Present once the counters equal Postgres as of some rebuild; deltas are applied
    # only on top of a built petition.
    built: str
    # How many times batches were applied here (and rebuilds done): the applied-batch
    # sequence, checked against what Postgres acknowledged (sql/012_scale.sql).
    seq: str
    # batch id -> its number in the sequence, for batches applied but not yet
    # acknowledged in Postgres (0: covered by a rebuild).
    applied: str
    # Exclusive right to rebuild this petition, held by one worker token at a time.
    rebuild_lease: str
    # The petition's own update channel, for sharded pub/sub on a cluster (SPUBLISH is
    # bound to its channel's slot, which the hash tag makes the petition's).
    updates: str
    _batch_lease_prefix: str

    def batch_lease(self, batch_id: str) -> str:
        return self._batch_lease_prefix + batch_id


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = "cs"

    def petition(self, petition_id: int) -> PetitionKeys:
        base = f"{self.prefix}:{{p{petition_id}}}:"
        return PetitionKeys(
            total=base + "total",
            countries=base + "country",
            sources=base + "source",
            updated_at=base + "updated",
            built=base + "built",
            seq=base + "seq",
            applied=base + "applied",
            rebuild_lease=base + "rebuild",
            updates=base + "updates",
            _batch_lease_prefix=base + "lease:",
        )

    @property
    def updates_channel(self) -> str:
        """Pub/sub channel carrying an update message (``counts.CountsUpdate``) after every
        change, on one server; a cluster carries it on each petition's ``updates``."""
        return f"{self.prefix}:updates"

    def namespace_pattern(self) -> str:
        """Glob matching every key of this layout (tests and tooling clean up with it)."""
        return f"{self.prefix}:*"
