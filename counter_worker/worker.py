"""The counter worker: drains ``counter_events`` into Redis, exactly once.

The protocol, per batch of one petition's events:

1. Lease: take ``lease:<batch>`` in Redis (SET NX, short TTL, renewed while working).
   The batch id is fresh, so this always succeeds; taking it *before* the claim means a
   worker that stalls anywhere after claiming can be fenced off.
2. Claim: one Postgres statement marks unclaimed events with the batch id, commits.
3. Apply: one Lua script adds the summed deltas, if and only if this worker still holds
   the lease, the petition's counters are built, the batch is not already applied, and
   Redis is not behind Postgres (below); it marks the batch applied in the same step.
4. Ack: delete the batch's events in Postgres, then forget the applied marker and lease.

The applied-batch sequence (sql/012_scale.sql): each application in Redis takes the next
number of the petition's sequence, and the ack records it in Postgres. Redis replication
is asynchronous, so a failover, a restore from an old snapshot or a promoted replica may
lose applications whose events Postgres has already deleted. Then Redis is behind the
highest number acknowledged (the apply script refuses, and the worker's regular check
sees it even when nobody signs), or it hands out a number again, which the ack finds
already recorded for another batch. Either way the petition is rebuilt, by itself.

Recovery: a batch claimed longer ago than the lease is taken over by whoever wins its
lease (SET NX); re-applying is a no-op when the applied marker is there.

Rebuild (counters missing, or on demand): take the petition's rebuild lease, delete its
``built`` marker so no delta lands mid-rebuild, then in one REPEATABLE READ snapshot
count the signatures, claim every unclaimed event and list batches in flight; write the
counts, the marker, and "applied" for all those batches in one script; ack. A batch in
flight that was already applied is covered by the counts; one applied later is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass, field
from uuid import uuid4

import asyncpg

from counter_worker import metrics, queries
from counter_worker.keys import KeyLayout
from counter_worker.scripts import Scripts
from countersign_core.connections import TRANSIENT_ERRORS, RedisClient
from countersign_core.heartbeats import Heartbeat, process_name
from countersign_core.runtime import in_background
from countersign_core.settings import WorkerConfig
from countersign_domain.housekeeping import close_expired
from countersign_domain.ip_keys import destroy_expired_keys

log = logging.getLogger("counter_worker")

NOTIFY_CHANNEL = "countersign_events"
# The points of the protocol where the worker calls its ``on_step`` hook.
# "log_before_commit" is the signature log appender's (counter_worker/signature_log.py).
STEPS = ("after_claim", "after_apply", "rebuild_before_write", "log_before_commit")
MARKER_SWEEP_INTERVAL = 60.0
# Acknowledged sequence numbers kept per petition below its highest (see TRIM_ACKS).
ACKS_KEPT = 1000


class CounterWorker:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        redis: RedisClient,
        layout: KeyLayout,
        config: WorkerConfig,
        *,
        on_step: Callable[[str], None] | None = None,
        heartbeat_interval: float = 10.0,
    ) -> None:
        # A direct connection (never through a transaction pooler): LISTEN needs a session.
        self.dsn = dsn
        self.pool = pool
        self.redis = redis
        self.layout = layout
        self.scripts = Scripts(redis, layout)
        self.config = config
        self.token = process_name()
        self.heartbeat = Heartbeat("counter_worker", self.token, interval=heartbeat_interval)
        # Called with each name of STEPS as the worker passes that point (tests stop it
        # there to kill or freeze it at an exact step of the protocol).
        self._on_step = on_step or (lambda _step: None)
        self._petitions_changed = True
        self._next_batch_at = 0.0  # loop time; see WorkerConfig.pace

    # -- the batch path ---------------------------------------------------------------

    async def process_next_batch(self) -> bool:
        """Claim, apply and ack one batch. False when there was nothing to claim."""
        petition_id = await self.pool.fetchval(queries.NEXT_PETITION)
        if petition_id is None:
            return False
        batch_id = str(uuid4())
        lease = self.layout.petition(petition_id).batch_lease(batch_id)
        await self.redis.set(lease, self.token, nx=True, px=self.config.lease_ms)
        async with self._keep_lease(lease):
            rows = await self.pool.fetch(
                queries.CLAIM_BATCH, petition_id, batch_id, self.config.batch_size
            )
            if not rows:  # another worker claimed them first
                await self.scripts.release_lease(lease, self.token)
                return True
            self._on_step("after_claim")
            await self._apply_and_ack(petition_id, batch_id, rows)
        return True

    async def _apply_and_ack(
        self, petition_id: int, batch_id: str, rows: list[asyncpg.Record]
    ) -> None:
        keys = self.layout.petition(petition_id)
        claimed_at = asyncio.get_running_loop().time()
        countries: dict[str, int] = {}
        sources: dict[str, int] = {}
        events, oldest_age = 0, 0.0
        for row in rows:
            countries[row["country"]] = countries.get(row["country"], 0) + row["delta"]
            sources[row["source"]] = sources.get(row["source"], 0) + row["delta"]
            events += row["events"]
            oldest_age = max(oldest_age, row["age"])
        countries = {k: v for k, v in countries.items() if v}
        sources = {k: v for k, v in sources.items() if v}
        acked_seq, diverged = rows[0]["acked_seq"], rows[0]["diverged"]
        if diverged:
            await self._rebuild_lost(petition_id, "an acknowledged number came back")

        deadline = asyncio.get_running_loop().time() + self.config.lease_ms / 2000
        while True:
            outcome = await self.scripts.apply(
                keys, petition_id, batch_id, self.token, acked_seq, countries, sources
            )
            if outcome.status not in ("needs_rebuild", "behind"):
                break
            if asyncio.get_running_loop().time() > deadline:
                break
            # Counters missing (Redis flushed or restarted) or behind Postgres (Redis
            # lost applied batches): rebuild, then retry. The rebuild either covers this
            # batch (then the retry is a no-op) or precedes it.
            if outcome.status == "behind":
                rebuilt = await self._rebuild_lost(
                    petition_id, f"Redis is at {outcome.seq}, Postgres acknowledged {acked_seq}"
                )
            else:
                rebuilt = await self.rebuild_petition(petition_id)
            if not rebuilt:
                await asyncio.sleep(0.05)  # another worker is rebuilding it

        if outcome.status == "applied":
            # The age was read at the claim, on the database's clock; the rest is ours.
            applied_after = asyncio.get_running_loop().time() - claimed_at
            metrics.COMMIT_TO_REDIS.observe(oldest_age + applied_after)
            metrics.BATCH_EVENTS.observe(events)
        if outcome.status in ("applied", "already_applied"):
            self._on_step("after_apply")
            diverged = await self.acknowledge(petition_id, batch_id, outcome.seq)
            await self.scripts.forget_batch(keys, batch_id, self.token)
            if diverged:
                await self._rebuild_lost(
                    petition_id, f"number {outcome.seq} was handed out for two batches"
                )
        elif outcome.status == "not_leaseholder":
            log.warning(
                "lease on batch %s of petition %s expired before it was applied; "
                "leaving it to the worker that took it over",
                batch_id,
                petition_id,
            )
        else:
            log.warning("petition %s is not rebuilt yet; batch %s waits", petition_id, batch_id)
            await self.scripts.release_lease(keys.batch_lease(batch_id), self.token)

    async def acknowledge(self, petition_id: int, batch_id: str, seq: int) -> bool:
        """Acknowledge the batch; True if its number shows that Redis lost batches."""
        diverged: bool = await self.pool.fetchval(queries.ACK_BATCH, batch_id, petition_id, seq)
        return diverged

    async def _rebuild_lost(self, petition_id: int, evidence: str) -> bool:
        log.warning(
            "Redis lost applied batches of petition %s (%s); rebuilding", petition_id, evidence
        )
        metrics.LOST_IN_REDIS.inc()
        return await self.rebuild_petition(petition_id)

    async def recover_stale_batches(self) -> int:
        """Finish batches whose worker stopped renewing its lease. Returns how many."""
        stale_after = self.config.lease_ms / 1000
        recovered = 0
        for row in await self.pool.fetch(queries.STALE_BATCHES, stale_after):
            batch_id, petition_id = row["batch_id"], row["petition_id"]
            lease = self.layout.petition(petition_id).batch_lease(batch_id)
            if not await self.redis.set(lease, self.token, nx=True, px=self.config.lease_ms):
                continue  # its worker is alive (renewing), or someone else took it over
            async with self._keep_lease(lease):
                rows = await self.pool.fetch(queries.BATCH_DELTAS, petition_id, batch_id)
                if not rows:  # acknowledged meanwhile
                    await self.scripts.forget_batch(
                        self.layout.petition(petition_id), batch_id, self.token
                    )
                    continue
                log.info("recovering batch %s of petition %s", batch_id, petition_id)
                await self._apply_and_ack(petition_id, batch_id, rows)
                recovered += 1
        return recovered

    # -- rebuilds ---------------------------------------------------------------------

    async def rebuild_petition(self, petition_id: int) -> bool:
        """Make the petition's counters equal Postgres. False if another worker holds it."""
        keys = self.layout.petition(petition_id)
        if not await self.redis.set(
            keys.rebuild_lease, self.token, nx=True, px=self.config.lease_ms
        ):
            return False
        try:
            async with self._keep_lease(keys.rebuild_lease):
                if await self.scripts.invalidate(keys, self.token) != "invalidated":
                    return False
                batch_id = str(uuid4())
                batch_lease = keys.batch_lease(batch_id)
                await self.redis.set(batch_lease, self.token, nx=True, px=self.config.lease_ms)
                async with self._keep_lease(batch_lease):
                    snapshot = await self._snapshot(petition_id, batch_id)
                    self._on_step("rebuild_before_write")
                    outcome = await self.scripts.rebuild(
                        keys,
                        petition_id,
                        batch_id,
                        self.token,
                        snapshot.acked_seq,
                        snapshot.countries,
                        snapshot.sources,
                        snapshot.in_flight,
                    )
                    if outcome.status != "rebuilt":
                        log.warning("rebuild of petition %s lost its lease", petition_id)
                        return False
                    # A conflict here is seen at the next check; no rebuild from a rebuild.
                    await self.acknowledge(petition_id, batch_id, outcome.seq)
                    await self.scripts.forget_batch(keys, batch_id, self.token)
            log.info(
                "rebuilt petition %s: %d counted", petition_id, sum(snapshot.countries.values())
            )
            metrics.REBUILDS.inc()
            return True
        finally:
            await self.scripts.release_lease(keys.rebuild_lease, self.token)

    async def _snapshot(self, petition_id: int, batch_id: str) -> Snapshot:
        """Counts, claim of every unclaimed event, batches in flight, and the sequence
        acknowledged: one snapshot."""
        async with self.pool.acquire() as conn:
            for attempt in range(20):
                try:
                    async with conn.transaction(isolation="repeatable_read"):
                        rows = await conn.fetch(queries.COUNTED_SIGNATURES, petition_id)
                        await conn.execute(queries.CLAIM_ALL_UNCLAIMED, petition_id, batch_id)
                        in_flight = await conn.fetch(
                            queries.BATCHES_IN_FLIGHT, petition_id, batch_id
                        )
                        acked_seq = await conn.fetchval(queries.ACKED_SEQ, petition_id)
                        await conn.execute(queries.CLEAR_DIVERGENCE, petition_id)
                    break
                except asyncpg.SerializationError:
                    # A worker claimed some of these events after our snapshot began.
                    await asyncio.sleep(0.01 * (attempt + 1))
            else:
                raise RuntimeError(f"rebuild of petition {petition_id} kept conflicting")
        snapshot = Snapshot(acked_seq, [row["batch_id"] for row in in_flight])
        for row in rows:
            countries, sources = snapshot.countries, snapshot.sources
            countries[row["country"]] = countries.get(row["country"], 0) + row["n"]
            sources[row["source"]] = sources.get(row["source"], 0) + row["n"]
        return snapshot

    async def rebuild_all(self) -> int:
        """Rebuild every petition (``countersign rebuild``). Returns how many."""
        rebuilt = 0
        for row in await self.pool.fetch(queries.PETITION_IDS):
            # Another worker may be rebuilding it; its lease ends within lease_ms.
            while not await self.rebuild_petition(row["id"]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            rebuilt += 1
        return rebuilt

    async def rebuild_stale(self) -> int:
        """Rebuild petitions whose counters are missing (new, or Redis lost them) or
        behind what Postgres acknowledged (Redis lost batches), even if nobody signs."""
        petitions = await self.pool.fetch(queries.PETITION_SEQUENCES)
        if not petitions:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in petitions:
                keys = self.layout.petition(row["id"])
                pipe.exists(keys.built)
                pipe.get(keys.seq)
            replies = await pipe.execute()
        rebuilt = 0
        for index, row in enumerate(petitions):
            built, seq = replies[2 * index], int(replies[2 * index + 1] or 0)
            if not built:
                done = await self.rebuild_petition(row["id"])
            elif row["diverged"]:
                done = await self._rebuild_lost(row["id"], "an acknowledged number came back")
            elif seq < row["acked_seq"]:
                evidence = f"Redis is at {seq}, Postgres acknowledged {row['acked_seq']}"
                done = await self._rebuild_lost(row["id"], evidence)
            else:
                continue
            rebuilt += done
        return rebuilt

    async def sweep_applied_markers(self) -> None:
        """Drop applied markers of batches already deleted from Postgres.

        They are normally dropped at ack; one outlives it only if a worker died between
        the ack and the drop, or a rebuild marked a batch acked moments before. A batch
        absent from Postgres can never be applied again, so its marker is dead weight.
        """
        for row in await self.pool.fetch(queries.PETITION_IDS):
            keys = self.layout.petition(row["id"])
            marked = await self.redis.hkeys(keys.applied)
            if not marked:
                continue
            alive = {r["batch_id"] for r in await self.pool.fetch(queries.EXISTING_BATCHES, marked)}
            if dead := [batch for batch in marked if batch not in alive]:
                await self.redis.hdel(keys.applied, *dead)
        await self.pool.execute(queries.TRIM_ACKS, ACKS_KEPT)

    async def close_expired_petitions(self) -> int:
        """Close petitions past their close date. Returns how many."""
        closed = await close_expired(self.pool)
        for petition_id in closed:
            log.info("petition %s reached its close date; closed", petition_id)
        return len(closed)

    async def destroy_expired_ip_keys(self) -> int:
        """Destroy the IP hash keys of days past the retention window. Returns how many."""
        destroyed = await destroy_expired_keys(self.pool, self.config.ip_hash_retention_days)
        for day in destroyed:
            log.info("destroyed the IP hash key of %s", day.isoformat())
        return len(destroyed)

    # -- the loop -----------------------------------------------------------------------

    async def drain(self) -> None:
        """Burst mode: build what is missing, recover, and apply until nothing is left."""
        await self.rebuild_stale()
        await self.recover_stale_batches()
        while await self.process_next_batch():
            pass

    async def run(self, stopping: asyncio.Event) -> None:
        """Work until ``stopping`` is set; the batch in hand is always finished first."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        listener: asyncpg.Connection | None = None
        next_maintenance = next_sweep = 0.0
        backoff = 0.1
        log.info("worker %s started", self.token)
        while not stopping.is_set():
            try:
                if listener is None or listener.is_closed():
                    listener = await self._listen(wake)
                    self._petitions_changed = True  # whatever happened while we were away
                wake.clear()
                if self._petitions_changed or loop.time() >= next_maintenance:
                    self._petitions_changed = False
                    await self.rebuild_stale()
                    await self.recover_stale_batches()
                    await self.close_expired_petitions()
                    metrics.EVENTS_WAITING.set(await self.pool.fetchval(queries.EVENTS_WAITING))
                    next_maintenance = loop.time() + self.config.poll_interval
                if loop.time() >= next_sweep:
                    await self.sweep_applied_markers()
                    await self.destroy_expired_ip_keys()
                    next_sweep = loop.time() + MARKER_SWEEP_INTERVAL
                await self._beat_if_due()
                while not stopping.is_set() and await self._paced_batch(stopping):
                    await self._beat_if_due()  # a long drain is progress too
                backoff = 0.1
            except TRANSIENT_ERRORS as exc:
                metrics.BACKEND_ERRORS.inc()
                log.warning(
                    "server unavailable (%s); retrying in %.1fs", type(exc).__name__, backoff
                )
                await _close_quietly(listener)
                listener = None
                await _wait_any(stopping, timeout=backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            await _wait_any(
                wake, stopping, timeout=min(self.config.poll_interval, self.heartbeat.interval)
            )
        await _close_quietly(listener)
        await self.heartbeat.forget(self.pool)
        log.info("worker %s stopped", self.token)

    async def _paced_batch(self, stopping: asyncio.Event) -> bool:
        """``process_next_batch``, at most one per ``pace``: a busy worker claims what
        arrived meanwhile in one batch (a few large batches cost far less than many
        small ones), and an idle one starts at once."""
        loop = asyncio.get_running_loop()
        if (wait := self._next_batch_at - loop.time()) > 0:
            await _wait_any(stopping, timeout=wait)
            if stopping.is_set():
                return False
        started = loop.time()
        if claimed := await self.process_next_batch():
            self._next_batch_at = started + self.config.pace
        return claimed

    async def _beat_if_due(self) -> None:
        # From the work loop itself, so a worker stuck anywhere stops beating; and only
        # once both its servers answered, so that a live heartbeat means a working worker.
        if self.heartbeat.due():
            await self.redis.ping()
            await self.heartbeat.beat(self.pool)

    async def _listen(self, wake: asyncio.Event) -> asyncpg.Connection:
        # A connection of its own: LISTEN holds it for the worker's whole life.
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn, timeout=5)

        def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == "petitions":
                self._petitions_changed = True
            wake.set()

        await conn.add_listener(NOTIFY_CHANNEL, notified)
        conn.add_termination_listener(lambda _conn: wake.set())
        return conn

    def _keep_lease(self, key: str) -> AbstractAsyncContextManager[None]:
        """Renew a lease we hold every third of its TTL until the block ends."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.config.lease_ms / 3000)
                try:
                    if not await self.scripts.renew_lease(key, self.token, self.config.lease_ms):
                        return
                except TRANSIENT_ERRORS:
                    return

        return in_background(renew())


@dataclass
class Snapshot:
    """What a rebuild read from Postgres in one snapshot."""

    acked_seq: int
    in_flight: list[str]
    countries: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)


async def _close_quietly(conn: asyncpg.Connection | None) -> None:
    if conn is not None:
        with suppress(Exception):
            await conn.close(timeout=1)


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
