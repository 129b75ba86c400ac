"""Rate limits kept in Redis: GCRA, one atomic Lua script per limited subject.

A subject is any string (``ip:<hash>:p<petition>``, ``partner:<id>``, ``global``) with one
or more windows, each a Rate: at most ``count`` per ``seconds``, in bursts of up to
``count``. GCRA (the generic cell rate algorithm) keeps a single timestamp per window,
so a limit costs one small key whatever its rate, and it has no window edges for a bot
to time. A window's key is ``<prefix>:{rl:<subject>}:<window>``: a subject's windows
share its hash tag, so the script is legal on Redis Cluster.

A refused request does not use up its subject's allowance. Each subject decides alone,
so a request refused by the global ceiling still counts against its address. Redis not
answering is not a reason to stop taking signatures: the checks are skipped, logged
once, and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from countersign_core.connections import TRANSIENT_ERRORS, RedisClient
from countersign_core.logs import OutageNotice
from countersign_core.settings import Rate
from petition_api import metrics

log = logging.getLogger("petition_api.ratelimit")

# KEYS: one per window.  ARGV: per window, its emission interval and its tolerance (ms).
# Returns {1, 0} when every window has room (and then takes it), else {0, retry after ms}.
GCRA = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + clock[2] / 1000
local wait = 0
local next_tat = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local allowed_at = tat - tolerance
  if allowed_at > now and allowed_at - now > wait then wait = allowed_at - now end
  next_tat[i] = tat + interval
end
if wait > 0 then return {0, math.ceil(wait)} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.3f', next_tat[i]), 'PX', math.ceil(next_tat[i] - now))
end
return {1, 0}
"""


@dataclass(frozen=True)
class Limit:
    subject: str
    windows: tuple[tuple[str, Rate], ...]
    # What a signature over this limit is marked with (its suspect_reason).
    reason: str


@dataclass(frozen=True)
class Verdict:
    exceeded: str | None  # the reason of the first limit exceeded, or None
    retry_after: float = 0.0  # seconds until that limit has room again


WITHIN_LIMITS = Verdict(None)


def window_key(prefix: str, subject: str, window: str) -> str:
    """The key of one window of a subject, under the service's Redis prefix."""
    return f"{prefix}:{{rl:{subject}}}:{window}"


def _gcra_args(rate: Rate) -> tuple[float, float]:
    interval = rate.seconds * 1000 / rate.count
    return interval, interval * (rate.count - 1)


class RateLimiter:
    def __init__(self, redis: RedisClient, prefix: str, *, timeout: float) -> None:
        self._prefix = prefix
        self._timeout = timeout
        self._script = redis.register_script(GCRA)
        self._redis = redis
        self._outage = OutageNotice(log, "rate limits skipped")

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        """Take one request from every limit with room; the verdict names the first that had
        none. All subjects in one round trip."""
        if not limits:
            return WITHIN_LIMITS
        try:
            async with asyncio.timeout(self._timeout):
                results = await self._run(limits)
        except TRANSIENT_ERRORS as exc:
            metrics.RATE_LIMITS_SKIPPED.inc()
            self._outage.failed(exc)
            return WITHIN_LIMITS
        self._outage.recovered()
        for limit, (allowed, wait_ms) in zip(limits, results, strict=True):
            if not allowed:
                return Verdict(limit.reason, wait_ms / 1000)
        return WITHIN_LIMITS

    async def _run(self, limits: Sequence[Limit]) -> list[tuple[int, int]]:
        calls = [
            (
                [window_key(self._prefix, limit.subject, name) for name, _ in limit.windows],
                [value for _, rate in limit.windows for value in _gcra_args(rate)],
            )
            for limit in limits
        ]
        if isinstance(self._redis, Redis):
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await self._script(keys=keys, args=args, client=pipe)
                results = await pipe.execute()
        else:
            # A cluster: each subject on its own node, in parallel (a cluster pipeline
            # cannot load a script that a node lacks, as after a failover).
            results = await asyncio.gather(
                *(self._script(keys=keys, args=args) for keys, args in calls)
            )
        return [(int(allowed), int(wait)) for allowed, wait in results]
