"""Lua scripts: each step of the counter protocol that touches Redis is one atomic script.

All keys of one call belong to one petition (one hash tag), so every script is legal on
Redis Cluster. Results are short status words; ``counter_worker.worker`` acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from redis.commands.core import AsyncScript

from counter_worker.counts import CountsUpdate
from counter_worker.keys import KeyLayout, PetitionKeys
from countersign_core.connections import RedisClient, is_cluster

# Every script that changes counts takes the same KEYS:
#   lease, built, total, countries, sources, updated, applied, seq
# and begins its ARGV with the publish command (PUBLISH, or SPUBLISH on a cluster), the
# channel, and the petition id. Shared tail: stamp the time and publish the update.
_STAMP_AND_PUBLISH = f"""
local now = redis.call('TIME')
redis.call('SET', KEYS[6], now[1] .. '.' .. string.format('%06d', now[2]))
local total = redis.call('GET', KEYS[3]) or '0'
redis.call(ARGV[1], ARGV[2], {CountsUpdate.lua("ARGV[3]", "total")})
"""

# Adds field deltas from ARGV starting at index `at`: a count, then field/delta pairs.
_HASH_DELTAS = """
local function add_deltas(key, at)
  local n = tonumber(ARGV[at])
  for i = 1, n do
    local field = ARGV[at + 2 * i - 1]
    local value = redis.call('HINCRBY', key, field, ARGV[at + 2 * i])
    if value == 0 then redis.call('HDEL', key, field) end
  end
  return at + 2 * n + 1
end
"""

# The sequence number Redis is at (0 when it has none: new, or emptied).
_SEQ = "local seq = tonumber(redis.call('GET', KEYS[8]) or '0')\n"

# ARGV: publish, channel, petition id, batch id, token, sequence acknowledged in
# Postgres, total delta, countries..., sources...
# Refuses ("behind") when Redis is behind what Postgres acknowledged: it lost applied
# batches (a failover, an old snapshot), and only a rebuild can say what is missing.
APPLY = (
    _HASH_DELTAS
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return {'not_leaseholder', 0} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'needs_rebuild', 0} end
local done = redis.call('HGET', KEYS[7], ARGV[4])
if done then return {'already_applied', tonumber(done)} end
"""
    + _SEQ
    + """
if seq < tonumber(ARGV[6]) then return {'behind', seq} end
redis.call('INCRBY', KEYS[3], ARGV[7])
local at = add_deltas(KEYS[4], 8)
add_deltas(KEYS[5], at)
seq = seq + 1
redis.call('SET', KEYS[8], string.format('%d', seq))
redis.call('HSET', KEYS[7], ARGV[4], string.format('%d', seq))
"""
    + _STAMP_AND_PUBLISH
    + "\nreturn {'applied', seq}"
)

# ARGV: publish, channel, petition id, the rebuild's batch id, token, sequence
# acknowledged in Postgres, total, countries..., sources..., batches in flight...
# The rebuild takes the next number after both Redis's and Postgres's; the batches in
# flight are covered by its counts (0: no number of their own).
REBUILD = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return {'not_leaseholder', 0} end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[3], ARGV[7])
local at = 8
for _, key in ipairs({KEYS[4], KEYS[5]}) do
  local n = tonumber(ARGV[at])
  for i = 1, n do
    redis.call('HSET', key, ARGV[at + 2 * i - 1], ARGV[at + 2 * i])
  end
  at = at + 2 * n + 1
end
for i = at + 1, at + tonumber(ARGV[at]) do
  redis.call('HSET', KEYS[7], ARGV[i], 0)
end
"""
    + _SEQ
    + """
seq = math.max(seq, tonumber(ARGV[6])) + 1
redis.call('SET', KEYS[8], string.format('%d', seq))
redis.call('HSET', KEYS[7], ARGV[4], string.format('%d', seq))
redis.call('SET', KEYS[2], 1)
"""
    + _STAMP_AND_PUBLISH
    + "\nreturn {'rebuilt', seq}"
)

# KEYS: rebuild lease, built.  ARGV: token.
# Before a rebuild reads Postgres, stop deltas landing on counters it is about to replace.
INVALIDATE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'not_leaseholder' end
redis.call('DEL', KEYS[2])
return 'invalidated'
"""

# KEYS: applied, lease.  ARGV: batch id, token.  After the batch's events are deleted.
FORGET_BATCH = """
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 'forgotten'
"""

# KEYS: lease.  ARGV: token, ttl ms.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease.  ARGV: token.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _pairs(counts: dict[str, int]) -> list[str | int]:
    flat: list[str | int] = [len(counts)]
    for field, value in counts.items():
        flat += [field, value]
    return flat


@dataclass(frozen=True)
class Outcome:
    """What an applying script did, and the batch's number in the sequence (0: none)."""

    status: str
    seq: int


class Scripts:
    """The scripts registered on one Redis client, with typed call wrappers."""

    def __init__(self, redis: RedisClient, layout: KeyLayout) -> None:
        self._layout = layout
        # A cluster cannot carry one channel for every petition's updates: a script may
        # only publish on a sharded channel of its own slot.
        self._sharded = is_cluster(redis)
        self._apply = redis.register_script(APPLY)
        self._rebuild = redis.register_script(REBUILD)
        self._invalidate = redis.register_script(INVALIDATE)
        self._forget = redis.register_script(FORGET_BATCH)
        self._renew = redis.register_script(RENEW_LEASE)
        self._release = redis.register_script(RELEASE_LEASE)

    def _publish_args(self, keys: PetitionKeys, petition_id: int) -> list[str | int]:
        if self._sharded:
            return ["SPUBLISH", keys.updates, petition_id]
        return ["PUBLISH", self._layout.updates_channel, petition_id]

    @staticmethod
    def _counter_keys(keys: PetitionKeys, lease: str) -> list[str]:
        return [
            lease,
            keys.built,
            keys.total,
            keys.countries,
            keys.sources,
            keys.updated_at,
            keys.applied,
            keys.seq,
        ]

    async def apply(
        self,
        keys: PetitionKeys,
        petition_id: int,
        batch_id: str,
        token: str,
        acked_seq: int,
        countries: dict[str, int],
        sources: dict[str, int],
    ) -> Outcome:
        args = self._publish_args(keys, petition_id)
        args += [batch_id, token, acked_seq, sum(countries.values())]
        args += _pairs(countries) + _pairs(sources)
        lease = keys.batch_lease(batch_id)
        return _outcome(await _call(self._apply, self._counter_keys(keys, lease), args))

    async def rebuild(
        self,
        keys: PetitionKeys,
        petition_id: int,
        batch_id: str,
        token: str,
        acked_seq: int,
        countries: dict[str, int],
        sources: dict[str, int],
        in_flight: list[str],
    ) -> Outcome:
        args = self._publish_args(keys, petition_id)
        args += [batch_id, token, acked_seq, sum(countries.values())]
        args += _pairs(countries) + _pairs(sources) + [len(in_flight), *in_flight]
        return _outcome(
            await _call(self._rebuild, self._counter_keys(keys, keys.rebuild_lease), args)
        )

    async def invalidate(self, keys: PetitionKeys, token: str) -> str:
        return str(await _call(self._invalidate, [keys.rebuild_lease, keys.built], [token]))

    async def forget_batch(self, keys: PetitionKeys, batch_id: str, token: str) -> None:
        await _call(self._forget, [keys.applied, keys.batch_lease(batch_id)], [batch_id, token])

    async def renew_lease(self, lease_key: str, token: str, ttl_ms: int) -> bool:
        return bool(await _call(self._renew, [lease_key], [token, ttl_ms]))

    async def release_lease(self, lease_key: str, token: str) -> None:
        await _call(self._release, [lease_key], [token])


def _outcome(reply: Any) -> Outcome:
    status, seq = reply
    return Outcome(str(status), int(seq))


async def _call(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    return cast(Any, await script(keys=keys, args=args))
