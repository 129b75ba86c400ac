"""Appending leaves: the counter worker's side of the signature log.

Per petition, in one transaction: lock the petition's ``log_state`` row (SKIP LOCKED, so
workers share petitions and never wait on each other), read the oldest waiting
``log_events``, append their leaves at the next indexes with the tree nodes they
complete, delete the events, record the new size and totals, and sign the new head.
A worker killed anywhere in between commits nothing, and the events wait for the next
one; the (petition, leaf index) primary key refuses a second leaf at any index. So each
change becomes exactly one leaf, whatever crashes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import asyncpg

from countersign_domain.signature_log import merkle
from countersign_domain.signature_log.heads import LogKey, TreeHead
from countersign_domain.signature_log.leaves import KIND_NAMES, Leaf, on_the_hour
from countersign_domain.signature_log.store import Totals, fetch_nodes

PENDING_PETITIONS = "SELECT DISTINCT petition_id FROM log_events"

ENSURE_STATE = "INSERT INTO log_state (petition_id) VALUES ($1) ON CONFLICT DO NOTHING"

LOCK_STATE = """
SELECT s.tree_size, s.counted, s.invalidated::text AS invalidated, s.erased, s.removed, p.slug
FROM log_state s JOIN petitions p ON p.id = s.petition_id
WHERE s.petition_id = $1
FOR UPDATE OF s SKIP LOCKED
"""

NEXT_EVENTS = """
SELECT id, kind, reason_class, commitment, at FROM log_events
WHERE petition_id = $1 ORDER BY id LIMIT $2
"""

INSERT_LEAVES = """
INSERT INTO log_leaves (petition_id, leaf_index, leaf, commitment)
SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[])
"""

INSERT_NODES = """
INSERT INTO log_nodes (petition_id, level, position, hash)
SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])
"""

DELETE_EVENTS = "DELETE FROM log_events WHERE id = ANY($1::bigint[])"

UPDATE_STATE = """
UPDATE log_state SET tree_size = $2, counted = $3, invalidated = $4::jsonb, erased = $5,
                     removed = $6
WHERE petition_id = $1
"""

INSERT_HEAD = """
INSERT INTO log_heads (petition_id, tree_size, root_hash, signed_at, counted, invalidated,
                       erased, removed, key_name, note)
VALUES ($1, $2, $3, to_timestamp($4), $5, $6::jsonb, $7, $8, $9, $10)
"""

REGISTER_KEY = """
INSERT INTO log_keys (name, public_key, vkey) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING
"""


class LogAppender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        key: LogKey,
        *,
        batch_size: int = 5000,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self.key = key
        self.batch_size = batch_size
        # Test seam: called inside the append transaction, just before it commits.
        self._before_commit = before_commit

    async def register_key(self) -> None:
        """Publish the public key (served at /v1/log/public-key) before signing with it."""
        await self.pool.execute(REGISTER_KEY, self.key.name, self.key.public, self.key.vkey)

    async def drain(self) -> int:
        """Append every waiting change of every petition no other worker holds. Returns
        how many leaves were appended."""
        appended = 0
        while True:
            batch = 0
            for row in await self.pool.fetch(PENDING_PETITIONS):
                batch += await self.append_batch(row["petition_id"])
            if not batch:
                return appended
            appended += batch

    async def append_batch(self, petition_id: int) -> int:
        """Append up to a batch of the petition's waiting changes and sign the new head.
        Returns how many leaves; 0 if none wait, or another worker holds the petition."""
        async with self.pool.acquire() as conn:
            await conn.execute(ENSURE_STATE, petition_id)
            async with conn.transaction():
                state = await conn.fetchrow(LOCK_STATE, petition_id)
                if state is None:
                    return 0
                events = await conn.fetch(NEXT_EVENTS, petition_id, self.batch_size)
                if not events:
                    return 0
                await self._append(conn, petition_id, state, events)
                if self._before_commit is not None:
                    self._before_commit()
        return len(events)

    async def _append(
        self,
        conn: asyncpg.Connection,
        petition_id: int,
        state: asyncpg.Record,
        events: list[asyncpg.Record],
    ) -> None:
        size = state["tree_size"]
        peaks = merkle.peak_nodes(size)
        stored = await fetch_nodes(conn, petition_id, peaks)
        tree = merkle.CompactTree(size, [stored[node] for node in peaks])
        totals = Totals(
            state["counted"], json.loads(state["invalidated"]), state["erased"], state["removed"]
        )
        encoded: list[bytes] = []
        commitments: list[bytes] = []
        nodes: list[tuple[merkle.Node, bytes]] = []
        for event in events:
            leaf = Leaf(
                KIND_NAMES[event["kind"]],
                on_the_hour(event["at"]),
                event["commitment"],
                event["reason_class"] or "",
            )
            data = leaf.encode()
            tree.append(merkle.leaf_hash(data), nodes)
            totals.add(leaf)
            encoded.append(data)
            commitments.append(leaf.commitment)

        await conn.execute(
            INSERT_LEAVES, petition_id, list(range(size, tree.size)), encoded, commitments
        )
        await conn.execute(
            INSERT_NODES,
            petition_id,
            [level for (level, _), _ in nodes],
            [position for (_, position), _ in nodes],
            [digest for _, digest in nodes],
        )
        await conn.execute(DELETE_EVENTS, [event["id"] for event in events])
        invalidated = json.dumps(totals.invalidated)
        await conn.execute(
            UPDATE_STATE,
            petition_id,
            tree.size,
            totals.counted,
            invalidated,
            totals.erased,
            totals.removed,
        )
        head = TreeHead(
            self.key.origin(state["slug"]), tree.size, tree.root(), int(time.time()), totals.counted
        )
        await conn.execute(
            INSERT_HEAD,
            petition_id,
            head.tree_size,
            head.root_hash,
            head.timestamp,
            totals.counted,
            invalidated,
            totals.erased,
            totals.removed,
            self.key.name,
            self.key.sign_note(head.checkpoint()),
        )
