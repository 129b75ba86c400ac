"""Reading the signature log from Postgres: heads, leaves, proofs, keys, totals."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

import asyncpg

from countersign_domain.signature_log import merkle
from countersign_domain.signature_log.leaves import Kind, Leaf

Connection: TypeAlias = asyncpg.Pool | asyncpg.Connection

# Which nodes to read, as two arrays: (level, position) pairs.
SELECT_NODES = """
SELECT n.level, n.position, n.hash
FROM unnest($2::smallint[], $3::bigint[]) AS wanted(level, position)
JOIN log_nodes n ON n.petition_id = $1 AND n.level = wanted.level
                AND n.position = wanted.position
"""

HEAD_COLUMNS = """
SELECT tree_size, root_hash, signed_at, counted, invalidated::text AS invalidated, erased,
       removed, note
FROM log_heads
"""
LATEST_HEAD = HEAD_COLUMNS + "WHERE petition_id = $1 ORDER BY tree_size DESC LIMIT 1"
HEADS_AFTER = HEAD_COLUMNS + "WHERE petition_id = $1 AND tree_size > $2 ORDER BY tree_size LIMIT $3"

SELECT_LEAVES = """
SELECT leaf FROM log_leaves
WHERE petition_id = $1 AND leaf_index >= $2 AND leaf_index < $3
ORDER BY leaf_index
"""

LEAVES_OF_COMMITMENT = """
SELECT leaf_index, leaf FROM log_leaves
WHERE petition_id = $1 AND commitment = $2
ORDER BY leaf_index
"""

SELECT_KEYS = "SELECT name, public_key, vkey FROM log_keys ORDER BY first_used_at, name"


@dataclass
class Totals:
    """What the leaves say counts: the counted total and the fraud ledger."""

    counted: int = 0
    invalidated: dict[str, int] = field(default_factory=dict)  # by reason class
    erased: int = 0
    removed: int = 0

    def add(self, leaf: Leaf) -> None:
        self.counted += leaf.kind.delta
        if leaf.kind in (Kind.INVALIDATED, Kind.RESTORED):
            change = 1 if leaf.kind is Kind.INVALIDATED else -1
            left = self.invalidated.get(leaf.reason_class, 0) + change
            if left:
                self.invalidated[leaf.reason_class] = left
            else:
                self.invalidated.pop(leaf.reason_class, None)
        elif leaf.kind is Kind.ERASED:
            self.erased += 1
        elif leaf.kind is Kind.REMOVED:
            self.removed += 1


@dataclass(frozen=True)
class SignedHead:
    tree_size: int
    root_hash: bytes
    signed_at: datetime
    totals: Totals
    note: str  # the signed checkpoint

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> SignedHead:
        totals = Totals(
            row["counted"], json.loads(row["invalidated"]), row["erased"], row["removed"]
        )
        return cls(row["tree_size"], row["root_hash"], row["signed_at"], totals, row["note"])


@dataclass(frozen=True)
class PublicKey:
    name: str
    public_key: bytes
    vkey: str


async def fetch_nodes(
    conn: Connection, petition_id: int, nodes: Iterable[merkle.Node]
) -> dict[merkle.Node, bytes]:
    wanted = list(nodes)
    rows = await conn.fetch(
        SELECT_NODES, petition_id, [level for level, _ in wanted], [pos for _, pos in wanted]
    )
    return {(row["level"], row["position"]): row["hash"] for row in rows}


async def latest_head(conn: Connection, petition_id: int) -> SignedHead | None:
    row = await conn.fetchrow(LATEST_HEAD, petition_id)
    return SignedHead.from_row(row) if row else None


async def heads_after(
    conn: Connection, petition_id: int, after: int, limit: int
) -> list[SignedHead]:
    """Heads of trees larger than ``after`` leaves, smallest first."""
    return [
        SignedHead.from_row(row) for row in await conn.fetch(HEADS_AFTER, petition_id, after, limit)
    ]


async def leaves(conn: Connection, petition_id: int, start: int, end: int) -> list[bytes]:
    return [row["leaf"] for row in await conn.fetch(SELECT_LEAVES, petition_id, start, end)]


async def leaves_of(
    conn: Connection, petition_id: int, commitment: bytes
) -> list[tuple[int, Leaf]]:
    """The leaves carrying one commitment (one signature's changes), in log order."""
    rows = await conn.fetch(LEAVES_OF_COMMITMENT, petition_id, commitment)
    return [(row["leaf_index"], Leaf.decode(row["leaf"])) for row in rows]


async def _proof(conn: Connection, petition_id: int, ranges: list[merkle.Range]) -> list[bytes]:
    nodes = await fetch_nodes(conn, petition_id, merkle.proof_nodes(ranges))
    return merkle.proof_hashes(ranges, nodes)


async def inclusion_proof(conn: Connection, petition_id: int, index: int, size: int) -> list[bytes]:
    return await _proof(conn, petition_id, merkle.inclusion_ranges(index, size))


async def consistency_proof(
    conn: Connection, petition_id: int, first: int, second: int
) -> list[bytes]:
    return await _proof(conn, petition_id, merkle.consistency_ranges(first, second))


async def public_keys(conn: Connection) -> list[PublicKey]:
    return [
        PublicKey(row["name"], row["public_key"], row["vkey"])
        for row in await conn.fetch(SELECT_KEYS)
    ]
