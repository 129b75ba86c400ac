"""Lua scripts: each step of the counter protocol that touches Redis is one atomic script.

All keys of one call belong to one petition (one hash tag), so every script is legal on
Redis Cluster. Results are short status words; ``counter_worker.worker`` acts on them.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from counter_worker.counts import CountsUpdate
from counter_worker.keys import PetitionKeys

# Shared tail: publish the update message (ARGV[1] is the channel, ARGV[2] the petition
# id) and stamp the time.
_STAMP_AND_PUBLISH = f"""
local now = redis.call('TIME')
redis.call('SET', KEYS[6], now[1] .. '.' .. string.format('%06d', now[2]))
local total = redis.call('GET', KEYS[3]) or '0'
redis.call('PUBLISH', ARGV[1], {CountsUpdate.lua("ARGV[2]", "total")})
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

# KEYS: lease, built, total, countries, sources, updated, applied
# ARGV: channel, petition id, batch id, token, total delta, countries..., sources...
APPLY = (
    _HASH_DELTAS
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[4] then return 'not_leaseholder' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'needs_rebuild' end
if redis.call('HEXISTS', KEYS[7], ARGV[3]) == 1 then return 'already_applied' end
redis.call('INCRBY', KEYS[3], ARGV[5])
local at = add_deltas(KEYS[4], 6)
add_deltas(KEYS[5], at)
redis.call('HSET', KEYS[7], ARGV[3], 1)
"""
    + _STAMP_AND_PUBLISH
    + "\nreturn 'applied'"
)

# KEYS: lease, built, total, countries, sources, updated, applied
# ARGV: channel, petition id, token, total, countries..., sources..., batch ids...
REBUILD = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[3] then return 'not_leaseholder' end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[3], ARGV[4])
local at = 5
for _, key in ipairs({KEYS[4], KEYS[5]}) do
  local n = tonumber(ARGV[at])
  for i = 1, n do
    redis.call('HSET', key, ARGV[at + 2 * i - 1], ARGV[at + 2 * i])
  end
  at = at + 2 * n + 1
end
for i = at + 1, at + tonumber(ARGV[at]) do
  redis.call('HSET', KEYS[7], ARGV[i], 1)
end
redis.call('SET', KEYS[2], 1)
"""
    + _STAMP_AND_PUBLISH
    + "\nreturn 'rebuilt'"
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


class Scripts:
    """The scripts registered on one Redis client, with typed call wrappers."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self._channel = channel
        self._apply = redis.register_script(APPLY)
        self._rebuild = redis.register_script(REBUILD)
        self._invalidate = redis.register_script(INVALIDATE)
        self._forget = redis.register_script(FORGET_BATCH)
        self._renew = redis.register_script(RENEW_LEASE)
        self._release = redis.register_script(RELEASE_LEASE)

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
        ]

    async def apply(
        self,
        keys: PetitionKeys,
        petition_id: int,
        batch_id: str,
        token: str,
        countries: dict[str, int],
        sources: dict[str, int],
    ) -> str:
        total = sum(countries.values())
        args = [self._channel, petition_id, batch_id, token, total]
        args += _pairs(countries) + _pairs(sources)
        lease = keys.batch_lease(batch_id)
        return str(await _call(self._apply, self._counter_keys(keys, lease), args))

    async def rebuild(
        self,
        keys: PetitionKeys,
        petition_id: int,
        token: str,
        countries: dict[str, int],
        sources: dict[str, int],
        applied_batches: list[str],
    ) -> str:
        args = [self._channel, petition_id, token, sum(countries.values())]
        args += _pairs(countries) + _pairs(sources) + [len(applied_batches), *applied_batches]
        return str(await _call(self._rebuild, self._counter_keys(keys, keys.rebuild_lease), args))

    async def invalidate(self, keys: PetitionKeys, token: str) -> str:
        return str(await _call(self._invalidate, [keys.rebuild_lease, keys.built], [token]))

    async def forget_batch(self, keys: PetitionKeys, batch_id: str, token: str) -> None:
        await _call(self._forget, [keys.applied, keys.batch_lease(batch_id)], [batch_id, token])

    async def renew_lease(self, lease_key: str, token: str, ttl_ms: int) -> bool:
        return bool(await _call(self._renew, [lease_key], [token, ttl_ms]))

    async def release_lease(self, lease_key: str, token: str) -> None:
        await _call(self._release, [lease_key], [token])


async def _call(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    return cast(Any, await script(keys=keys, args=args))
